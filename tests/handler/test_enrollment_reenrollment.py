"""Re-enrollment on the harness (batch and one by one): ``never`` once ever,
``when_not_active`` again once ended, ``anytime`` restarts a live enrollment."""

from __future__ import annotations

import pytest

from services.enrollment.domain import Status
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentRejected,
    EnrollmentStepScheduled,
)
from tests.support.builders.enrollment_commands import ALICE, definition, enroll_cmd, exit_cmd
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    enrolled_in,
    enrollment_harness,
    only,
)

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


def live(h: EnrollmentHarness) -> list[Status]:
    return [e.status for e in h.store.enrollments.values() if e.status.live]


async def test_an_anytime_enroll_of_a_live_record_exits_it_and_starts_over(
    h: EnrollmentHarness,
) -> None:
    first = await enrolled_in(h, definition(0, 24, reenrollment="anytime"))

    outcome = await h.when(enroll_cmd())

    assert [m.type for m in outcome.published] == [
        EnrollmentExited.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    exited = only(outcome, EnrollmentExited)
    assert exited.payload.enrollment_id == first.payload.enrollment_id
    assert (exited.payload.reason, exited.payload.source) == (
        ExitReason.REENROLLED,
        ExitSource.WORKFLOW,
    )
    again = only(outcome, EnrollmentEnrolled)
    assert again.payload.enrollment_id != first.payload.enrollment_id
    assert live(h) == [Status.ACTIVE]


async def test_a_run_of_anytime_enrolls_of_one_record_restarts_it_each_time(
    h: EnrollmentHarness,
) -> None:
    await enrolled_in(h, definition(0, 24, reenrollment="anytime"))
    outcome = await h.when(enroll_cmd(), enroll_cmd(), enroll_cmd())

    assert len(outcome.of_type(EnrollmentExited)) == 3
    assert len(outcome.of_type(EnrollmentEnrolled)) == 3
    assert live(h) == [Status.ACTIVE]
    assert len(h.store.enrollments) == 4


async def test_a_when_not_active_workflow_refuses_a_live_record_and_admits_it_after_its_exit(
    h: EnrollmentHarness,
) -> None:
    await enrolled_in(h, definition(0, 24, reenrollment="when_not_active"))

    refused = only(await h.when(enroll_cmd()), EnrollmentRejected)
    await h.when(exit_cmd(ALICE))
    admitted = await h.when(enroll_cmd())

    assert [r.code for r in refused.payload.rejections] == ["already_enrolled"]
    assert len(admitted.of_type(EnrollmentEnrolled)) == 1
    assert admitted.of_type(EnrollmentExited) == []


async def test_a_never_workflow_refuses_a_record_that_was_in_it(h: EnrollmentHarness) -> None:
    await enrolled_in(h, definition(0, 24, reenrollment="never"))
    await h.when(exit_cmd(ALICE))

    refused = only(await h.when(enroll_cmd()), EnrollmentRejected)

    assert [r.code for r in refused.payload.rejections] == ["reenrollment_not_allowed"]
    assert live(h) == []


async def test_an_anytime_workflow_still_waits_the_minimum_days_to_restart(
    h: EnrollmentHarness,
) -> None:
    await enrolled_in(h, definition(0, 24, reenrollment="anytime", min_days_between_enrollments=2))

    refused = only(await h.when(enroll_cmd()), EnrollmentRejected)

    assert [r.code for r in refused.payload.rejections] == ["reenrollment_too_soon"]
    assert live(h) == [Status.ACTIVE]
