"""The enrollment handlers on the shared harness, and the state most cases start from."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from services.enrollment.config import EnrollmentSettings
from services.enrollment.exclusion_handlers import build_all_handlers
from services.enrollment.parking import expire_round
from shared.contracts import Message, RecordRef
from shared.contracts.events import (
    EnrollmentEnrolled,
)
from shared.contracts.lifecycle_events import (
    CommandRefused,
)
from shared.contracts.workflow import WorkflowDefinition
from tests.support.builders.enrollment_commands import ALICE, apply_cmd, definition, enroll_cmd
from tests.support.builders.enrollment_events import T0
from tests.support.fakes.enrollment import FakeEnrollmentStore
from tests.support.harness import Harness, Outcome

EnrollmentHarness = Harness[FakeEnrollmentStore]

PARK_MAX = timedelta(hours=1)
"""How long the handler tests let a parked enroll wait (``OFFRAMP_PARK_MAX_S``' default)."""
TOO_LONG = PARK_MAX + timedelta(seconds=1)
"""A wait past ``PARK_MAX``."""

M = TypeVar("M")

SCREENING_CALLS = ["lock_exclusions", "subjects", "account_rules", "rulesets"]
"""The statements an enroll run spends on exclusion rules (``screening.screen_enrolls``)."""


LEASE = timedelta(seconds=EnrollmentSettings().dispatch_lease_s)
"""How long a step's dispatch grant lasts in the handler tests (the default)."""


def enrollment_harness() -> EnrollmentHarness:
    """The enrollment handlers over an empty fake store, the clock at ``T0``."""
    return Harness(build_all_handlers(EnrollmentSettings()), FakeEnrollmentStore, now=T0)


def only(outcome: Outcome, kind: type[M]) -> M:
    """The one message of type ``kind`` the outcome published."""
    (found,) = outcome.of_type(kind)
    return found  # type: ignore[no-any-return]


async def enrolled_in(
    h: EnrollmentHarness, wf: WorkflowDefinition | None = None, record: RecordRef = ALICE
) -> EnrollmentEnrolled:
    """Apply ``wf`` (unless it is current) and enroll ``record`` in it."""
    wf = wf or definition()
    outcome = await h.when(apply_cmd(wf), enroll_cmd(record, wf.workflow_id))
    return only(outcome, EnrollmentEnrolled)


async def expire(h: EnrollmentHarness, *, after: timedelta) -> Outcome:
    """One round of the parked-enroll loop, ``after`` past the harness's clock."""
    _, outcome = await h.step(
        lambda uow: expire_round(uow, now=h.now + after, max_wait_s=PARK_MAX.total_seconds())
    )
    return outcome


def answers(outcome: Outcome) -> list[str]:
    """The codes of the ``command.refused`` answers the outcome published, in order."""
    return [m.payload.code for m in outcome.of_type(CommandRefused)]


def changes(outcome: Outcome) -> list[Message]:
    """What the outcome published besides ``command.refused`` answers."""
    return [m for m in outcome.published if not isinstance(m, CommandRefused)]
