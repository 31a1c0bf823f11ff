"""Enrollment handlers on the fake store: sent steps, pausing and resuming.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.enrollment.domain import Status
from services.enrollment.errors import EnrollmentError, MissingWorkflowVersionError
from services.enrollment.handlers import step_sent
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentStepCompleted,
    EnrollmentStepScheduled,
)
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_commands import (
    definition,
    pause_cmd,
    resume_cmd,
    sent_evt,
)
from tests.support.builders.enrollment_events import T0
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    answers,
    changes,
    enrolled_in,
    enrollment_harness,
    only,
)

pytestmark = pytest.mark.handler

HOUR = timedelta(hours=1)


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


# --- steps ----------------------------------------------------------------------------


async def test_a_sent_step_completes_it_and_schedules_the_next(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h, definition(0, 24, 48))
    sent_at = T0 + timedelta(minutes=1)

    outcome = await h.when(sent_evt(enrolled, 0, sent_at))

    assert [m.type for m in outcome.published] == [
        EnrollmentStepCompleted.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    completed = only(outcome, EnrollmentStepCompleted)
    assert (completed.payload.step_index, completed.payload.step_id) == (0, "s0")
    assert completed.payload.provider_message_id == "<m-0@offramp.test>"
    scheduled = only(outcome, EnrollmentStepScheduled)
    assert (scheduled.payload.step_index, scheduled.payload.step_id) == (1, "s1")
    assert scheduled.payload.due_at == sent_at + 24 * HOUR
    saved = h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.current_step, saved.steps_completed) == (1, 1)


async def test_the_last_sent_step_completes_the_enrollment(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h, definition(0, 24))
    await h.when(sent_evt(enrolled, 0, T0))

    outcome = await h.when(sent_evt(enrolled, 1, T0 + 24 * HOUR))

    assert [m.type for m in outcome.published] == [
        EnrollmentStepCompleted.TYPE,
        EnrollmentCompleted.TYPE,
    ]
    assert only(outcome, EnrollmentCompleted).payload.steps_completed == 2
    saved = h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.ended_at) == (Status.COMPLETED, T0 + 24 * HOUR)


async def test_a_send_of_a_step_already_recorded_changes_nothing(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    await h.when(sent_evt(enrolled, 0, T0))

    assert (await h.when(sent_evt(enrolled, 0, T0))).published == []


async def test_a_run_of_sends_advances_each_enrollment_in_four_statements(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h, definition(0, 24, 48))
    h.store.calls.clear()

    outcome = await h.when(
        sent_evt(enrolled, 0, T0),
        sent_evt(enrolled, 0, T0),  # a repeat: changes nothing
        sent_evt(enrolled, 1, T0 + 24 * HOUR),
        sent_evt(enrolled, 2, T0 + 72 * HOUR),
    )

    assert [m.type for m in outcome.published] == [
        EnrollmentStepCompleted.TYPE,
        EnrollmentStepScheduled.TYPE,
        EnrollmentStepCompleted.TYPE,
        EnrollmentStepScheduled.TYPE,
        EnrollmentStepCompleted.TYPE,
        EnrollmentCompleted.TYPE,
    ]
    saved = h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.steps_completed) == (Status.COMPLETED, 3)
    assert h.store.calls == [
        "enrollments_for_update",
        "workflow_versions",
        "save_progress",
        "add_history",
    ]


async def test_a_send_for_an_enrollment_whose_version_is_missing_is_retried(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h)
    h.store.versions.clear()  # as no PostgreSQL store can be: every enrollment has its version

    with pytest.raises(MissingWorkflowVersionError) as raised:
        await step_sent(UnitOfWork(None, h.store), [sent_evt(enrolled, 0, T0)], T0)

    assert isinstance(raised.value, EnrollmentError)
    assert str(enrolled.payload.enrollment_id) in str(raised.value)


# --- pause and resume -----------------------------------------------------------------


async def test_pausing_publishes_paused(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    command = pause_cmd()

    (paused,) = (await h.when(command)).published

    assert isinstance(paused, EnrollmentPaused)
    assert paused.payload.enrollment_id == enrolled.payload.enrollment_id
    assert (paused.payload.reason, paused.payload.until) == ("ooo", command.payload.until)
    assert (
        h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.PAUSED
    )
    assert answers(await h.when(pause_cmd())) == ["already_paused"]


@pytest.mark.parametrize(("resumed_after", "due_after"), [(HOUR, 2 * HOUR), (3 * HOUR, 3 * HOUR)])
async def test_resuming_publishes_resumed_and_schedules_the_current_step(
    h: EnrollmentHarness, resumed_after: timedelta, due_after: timedelta
) -> None:
    enrolled = await enrolled_in(h, definition(2, 24))
    await h.when(pause_cmd())
    h.now = T0 + resumed_after

    outcome = await h.when(resume_cmd())

    assert [m.type for m in outcome.published] == [
        EnrollmentResumed.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    scheduled = only(outcome, EnrollmentStepScheduled)
    assert scheduled.payload.enrollment_id == enrolled.payload.enrollment_id
    assert (scheduled.payload.step_index, scheduled.payload.due_at) == (0, T0 + due_after)
    assert (
        h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.ACTIVE
    )
    assert answers(await h.when(resume_cmd())) == ["not_paused"]


async def test_a_step_sent_while_paused_is_recorded_and_the_next_waits_for_resume(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h, definition(0, 24, 48))
    await h.when(pause_cmd())

    published = (await h.when(sent_evt(enrolled, 0, T0))).published
    h.now = T0 + HOUR
    resumed = await h.when(resume_cmd())

    assert [m.type for m in published] == [EnrollmentStepCompleted.TYPE]
    scheduled = only(resumed, EnrollmentStepScheduled)
    assert (scheduled.payload.step_index, scheduled.payload.due_at) == (1, T0 + 24 * HOUR)


async def test_a_pause_and_a_resume_in_one_batch_leave_the_enrollment_active(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h, definition(2, 24))
    h.store.calls.clear()

    outcome = await h.when(pause_cmd(), pause_cmd(), resume_cmd(), resume_cmd())

    assert [m.type for m in changes(outcome)] == [
        EnrollmentPaused.TYPE,
        EnrollmentResumed.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    assert answers(outcome) == ["already_paused", "not_paused"]
    saved = h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.next_due_at) == (Status.ACTIVE, T0 + 2 * HOUR)
    assert h.store.calls == [
        "live_enrollments_for_update",
        "save_progress",
        "add_history",
        "live_enrollments_for_update",
        "workflow_versions",
        "save_progress",
        "add_history",
    ]
