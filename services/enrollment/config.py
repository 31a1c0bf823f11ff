"""Enrollment settings (environment, prefix ``OFFRAMP_``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class EnrollmentSettings(ServiceSettings):
    park_max_s: float = Field(
        3600.0,
        gt=0,
        description="How long an `enrollment.enroll` read before its workflow's "
        "`workflow.apply` waits for it (parked in enrollment's database, enrolled the moment "
        "the workflow is applied) before it is rejected with `unknown_workflow`.",
    )

    dispatch_lease_s: float = Field(
        120.0,
        gt=0,
        description="How long a step's dispatch grant lets messaging start the send "
        "(`enrollment.step_granted` `lease_until`); messaging asks for a renewal "
        "(`message.deferred`) when it could not start in time. An exit decided while a "
        "grant is out waits for that send's outcome, at most this long (plus the skew) "
        "when messaging does not answer.",
    )
    dispatch_clock_skew_s: float = Field(
        5.0,
        ge=0,
        description="How far enrollment's and messaging's clocks may disagree: an exit "
        "waiting on a grant that messaging never answered commits this long after the "
        "grant's lease has lapsed.",
    )

    sweep_chunk: int = Field(
        500,
        ge=1,
        le=10_000,
        description="How many live enrollments of a paused or deleted workflow exit per "
        "transaction (each chunk publishes `workflow.exits_progress`).",
    )
    sweep_idle_s: float = Field(
        0.5,
        gt=0,
        description="How often an idle enrollment replica looks for a paused or deleted "
        "workflow whose enrollments still have to exit (busy, it goes on at once), and for "
        "workflows that became active or inactive (`workflow.activity_changed`).",
    )

    @property
    def dispatch_sweep_s(self) -> float:
        """How often exits waiting on a lapsed grant are looked for: a tenth of the lease,
        between 0.1 s and 10 s."""
        return min(10.0, max(0.1, self.dispatch_lease_s / 10))

    @property
    def park_sweep_s(self) -> float:
        """How often expired parked enrolls are looked for: a tenth of the wait, between
        0.1 s and 30 s, so none is rejected much later than it is due."""
        return min(30.0, max(0.1, self.park_max_s / 10))
