"""Scheduler handlers on the fake store: step_scheduled arms, exits and pauses void.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.scheduler.handlers import build_handlers
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentStepScheduled,
)
from tests.support.builders.enrollment_events import (
    ACCOUNT,
    OTHER_ACCOUNT,
    T0,
    completed,
    exited,
    paused,
)
from tests.support.builders.enrollment_events import step_scheduled as scheduled
from tests.support.fakes.scheduler import FakeSchedulerStore
from tests.support.harness import Harness

pytestmark = pytest.mark.handler

Scheduler = Harness[FakeSchedulerStore]


@pytest.fixture
def h() -> Scheduler:
    return Harness(build_handlers(), FakeSchedulerStore, now=T0)


def test_the_scheduler_follows_steps_exits_completions_and_pauses(h: Scheduler) -> None:
    handlers = h.handlers
    assert set(handlers) == {
        EnrollmentStepScheduled.TYPE,
        EnrollmentExited.TYPE,
        EnrollmentCompleted.TYPE,
        EnrollmentPaused.TYPE,
        EnrollmentResumed.TYPE,  # it voids a timed pause's resume; its step comes as a new
    }  # step_scheduled
    # One handler for every stop, so that mixed exits and pauses make one run.
    assert handlers[EnrollmentExited.TYPE] is handlers[EnrollmentCompleted.TYPE]
    assert handlers[EnrollmentExited.TYPE] is handlers[EnrollmentPaused.TYPE]
    assert handlers[EnrollmentExited.TYPE] is handlers[EnrollmentResumed.TYPE]


async def test_a_scheduled_step_arms_a_timer(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()
    event = scheduled(enrollment_id, step_index=1, due_at=T0 + timedelta(hours=2))

    outcome = await h.when(event)

    timer = h.store.timers[(ACCOUNT, enrollment_id, 1)]
    assert (timer.account_id, timer.state) == (ACCOUNT, "pending")
    assert timer.step == event.payload
    assert h.store.calls == ["ended_among", "arm_timers"]
    assert outcome.published == []  # step.due is published by the timer loop, not here


async def test_a_step_scheduled_after_the_enrollment_ended_arms_nothing(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()

    await h.when(exited(enrollment_id), scheduled(enrollment_id, step_index=1))

    assert h.store.timers == {}


@pytest.mark.parametrize(("ending", "outcome"), [(exited, "exited"), (completed, "completed")])
async def test_an_ended_enrollment_is_remembered_and_its_timers_cancelled(
    h: Scheduler, ending: Any, outcome: str
) -> None:
    enrollment_id, other = uuid.uuid4(), uuid.uuid4()
    await h.when(scheduled(enrollment_id), scheduled(other))

    done = await h.when(ending(enrollment_id))

    assert h.store.ended == {(ACCOUNT, enrollment_id): outcome}
    assert h.store.states(enrollment_id, ACCOUNT) == {0: ("cancelled", outcome)}
    assert h.store.states(other, ACCOUNT) == {0: ("pending", None)}
    assert done.published == []


async def test_a_pause_cancels_timers_but_does_not_end_the_enrollment(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()
    await h.when(scheduled(enrollment_id, due_at=T0))

    await h.when(paused(enrollment_id))

    assert h.store.states(enrollment_id, ACCOUNT) == {0: ("cancelled", "paused")}
    assert h.store.ended == {}
    assert "mark_ended" not in h.store.calls


async def test_resuming_after_the_due_time_re_arms_the_cancelled_timer(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()
    await h.when(scheduled(enrollment_id, due_at=T0), paused(enrollment_id))

    # Resumed after T0: enrollment schedules the step at the resume time.
    await h.when(scheduled(enrollment_id, due_at=T0 + timedelta(hours=5)))

    assert h.store.states(enrollment_id, ACCOUNT) == {0: ("pending", None)}
    assert h.store.timers[(ACCOUNT, enrollment_id, 0)].step.due_at == T0 + timedelta(hours=5)


async def test_resuming_before_the_due_time_re_arms_the_cancelled_timer(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()
    due = T0 + timedelta(days=1)
    await h.when(scheduled(enrollment_id, due_at=due), paused(enrollment_id))

    # Resumed before ``due``: enrollment schedules the same step at the same time again.
    await h.when(scheduled(enrollment_id, due_at=due))

    assert h.store.states(enrollment_id, ACCOUNT) == {0: ("pending", None)}


# --- several messages in one run ---


async def test_a_run_of_steps_looks_up_ended_enrollments_once_and_arms_in_one_call(
    h: Scheduler,
) -> None:
    first, second, ended = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await h.when(exited(ended))
    h.store.calls.clear()

    await h.when(
        scheduled(first, step_index=0),
        scheduled(ended, step_index=1),
        scheduled(second, step_index=0),
        scheduled(first, step_index=1, due_at=T0 + timedelta(days=1)),
    )

    assert h.store.calls == ["ended_among", "arm_timers"]
    assert h.store.states(first, ACCOUNT) == {0: ("pending", None), 1: ("pending", None)}
    assert h.store.states(second, ACCOUNT) == {0: ("pending", None)}
    assert h.store.states(ended, ACCOUNT) == {}


async def test_a_run_of_stops_ends_and_cancels_in_two_calls_the_first_stop_winning(
    h: Scheduler,
) -> None:
    paused_then_exited, completed_then_exited, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await h.when(
        scheduled(paused_then_exited),
        scheduled(completed_then_exited),
        scheduled(other),
    )
    h.store.calls.clear()

    await h.when(
        paused(paused_then_exited),
        completed(completed_then_exited),
        exited(paused_then_exited),
        exited(completed_then_exited),
    )

    assert h.store.calls == ["mark_ended", "cancel_pending"]
    assert h.store.states(paused_then_exited, ACCOUNT) == {0: ("cancelled", "paused")}
    assert h.store.states(completed_then_exited, ACCOUNT) == {0: ("cancelled", "completed")}
    assert h.store.ended == {
        (ACCOUNT, paused_then_exited): "exited",
        (ACCOUNT, completed_then_exited): "completed",
    }
    assert h.store.states(other, ACCOUNT) == {0: ("pending", None)}


async def test_a_step_then_an_exit_in_one_batch_leaves_the_timer_cancelled(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()

    await h.when(scheduled(enrollment_id), exited(enrollment_id))

    assert h.store.states(enrollment_id, ACCOUNT) == {0: ("cancelled", "exited")}
    assert h.store.calls == ["ended_among", "arm_timers", "mark_ended", "cancel_pending"]


async def test_a_pause_and_a_resume_in_one_batch_re_arm_the_timer(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()

    await h.when(
        scheduled(enrollment_id, due_at=T0),
        paused(enrollment_id),
        scheduled(enrollment_id, due_at=T0 + timedelta(hours=5)),
    )

    assert h.store.states(enrollment_id, ACCOUNT) == {0: ("pending", None)}
    assert h.store.timers[(ACCOUNT, enrollment_id, 0)].step.due_at == T0 + timedelta(hours=5)


# --- accounts ---


async def test_another_accounts_stop_for_the_same_enrollment_id_touches_nothing_of_ours(
    h: Scheduler,
) -> None:
    enrollment_id = uuid.uuid4()  # the same id in two accounts
    await h.when(scheduled(enrollment_id), scheduled(enrollment_id, account=OTHER_ACCOUNT))

    await h.when(exited(enrollment_id, account=OTHER_ACCOUNT))
    await h.when(scheduled(enrollment_id, step_index=1))

    assert h.store.ended == {(OTHER_ACCOUNT, enrollment_id): "exited"}
    assert h.store.states(enrollment_id, OTHER_ACCOUNT) == {0: ("cancelled", "exited")}
    # Ours is not ended: its timer stays and its next step still arms one.
    assert h.store.states(enrollment_id, ACCOUNT) == {0: ("pending", None), 1: ("pending", None)}
