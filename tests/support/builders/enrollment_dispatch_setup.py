"""Enrollments in dispatch states, through the enrollment handlers, for the handler tests."""

from __future__ import annotations

from datetime import timedelta

from services.enrollment.config import EnrollmentSettings
from services.enrollment.dispatch_loop import lapse_round
from services.enrollment.domain import Enrollment
from shared.contracts.events import (
    EnrollmentDispatchRevoked,
    EnrollmentEnrolled,
    EnrollmentStepGranted,
)
from tests.support.builders.enrollment_commands import (
    exit_cmd,
)
from tests.support.builders.enrollment_dispatch import (
    due_evt,
)
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    enrolled_in,
    only,
)
from tests.support.harness import Outcome

SKEW = timedelta(seconds=EnrollmentSettings().dispatch_clock_skew_s)
MS = timedelta(milliseconds=1)


def saved(h: EnrollmentHarness, enrolled: EnrollmentEnrolled) -> Enrollment:
    return h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]


async def granted_in(h: EnrollmentHarness) -> tuple[EnrollmentEnrolled, EnrollmentStepGranted]:
    """An enrollment whose first step is granted to messaging."""
    enrolled = await enrolled_in(h)
    return enrolled, only(await h.when(due_evt(enrolled)), EnrollmentStepGranted)


async def exiting_in(
    h: EnrollmentHarness,
) -> tuple[EnrollmentEnrolled, EnrollmentStepGranted, EnrollmentDispatchRevoked]:
    """An enrollment whose exit waits for the outcome of its granted first step."""
    enrolled, grant = await granted_in(h)
    return enrolled, grant, only(await h.when(exit_cmd()), EnrollmentDispatchRevoked)


async def lapse(h: EnrollmentHarness, *, at: timedelta) -> Outcome:
    """One round of the lapse loop, ``at`` past the harness's clock."""
    _, outcome = await h.step(lambda uow: lapse_round(uow, now=h.now + at, skew=SKEW))
    return outcome
