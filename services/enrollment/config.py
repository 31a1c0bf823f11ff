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

    @property
    def park_sweep_s(self) -> float:
        """How often expired parked enrolls are looked for: a tenth of the wait, between
        0.1 s and 30 s, so none is rejected much later than it is due."""
        return min(30.0, max(0.1, self.park_max_s / 10))
