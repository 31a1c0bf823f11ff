"""Timed pauses across enrollment and the scheduler, on their fake stores: ``until`` is
stored, the scheduler's resume at that time resumes the enrollment once, and a resume
of a pause that already ended changes nothing.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.enrollment.domain import Status
from services.scheduler.handlers import build_handlers as scheduler_handlers
from services.scheduler.timers import fire_round
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import Resume
from shared.contracts.events import (
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentStepScheduled,
)
from tests.support.builders.enrollment_commands import (
    definition,
    exit_cmd,
    pause_cmd,
    resume_cmd,
)
from tests.support.builders.enrollment_events import ACCOUNT, T0
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    answers,
    changes,
    enrolled_in,
    enrollment_harness,
    only,
)
from tests.support.fakes.scheduler import FakeSchedulerStore
from tests.support.harness import Harness

pytestmark = pytest.mark.handler

HOUR = timedelta(hours=1)
Scheduler = Harness[FakeSchedulerStore]


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


@pytest.fixture
def scheduler() -> Scheduler:
    return Harness(scheduler_handlers(), FakeSchedulerStore, now=T0)


async def pause_until(
    h: EnrollmentHarness, scheduler: Scheduler, until_h: int
) -> tuple[EnrollmentPaused, Resume]:
    """Pause the enrollment until ``T0 + until_h`` hours; hand the scheduler the pause and
    return the resume its timer fires at that time."""
    command = pause_cmd()
    command = command.model_copy(
        update={"payload": command.payload.model_copy(update={"until": T0 + until_h * HOUR})}
    )
    paused = only(await h.when(command), EnrollmentPaused)
    await scheduler.when(paused)
    _, fired = await scheduler.step(lambda uow: fire_round(uow, now=T0 + until_h * HOUR, limit=10))
    [resume] = fired.published
    assert isinstance(resume, Resume)
    return paused, resume


async def test_a_pause_with_an_end_is_stored_with_it_and_announced(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h)
    command = pause_cmd()

    paused = only(await h.when(command), EnrollmentPaused)

    saved = h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.paused_until) == (Status.PAUSED, command.payload.until)
    assert saved.pause_id == paused.message_id  # what the scheduler's resume names
    assert paused.payload.until == command.payload.until


async def test_the_scheduler_s_resume_at_the_end_resumes_once(
    h: EnrollmentHarness, scheduler: Scheduler
) -> None:
    enrolled = await enrolled_in(h, definition(1, 24))
    _, resume = await pause_until(h, scheduler, 3)
    h.now = T0 + 3 * HOUR

    outcome = await h.when(resume, resume)

    assert [m.type for m in changes(outcome)] == [
        EnrollmentResumed.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    assert only(outcome, EnrollmentResumed).payload.actor == SYSTEM_ACTOR
    scheduled = only(outcome, EnrollmentStepScheduled)
    assert (scheduled.payload.step_index, scheduled.payload.due_at) == (0, T0 + 3 * HOUR)
    saved = h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.paused_until, saved.pause_id) == (Status.ACTIVE, None, None)
    # The scheduler hears of the resume: nothing left to fire.
    await scheduler.when(only(outcome, EnrollmentResumed))
    assert scheduler.store.resumes != {}  # the fired timer stays, as the record it fired
    _, later = await scheduler.step(lambda uow: fire_round(uow, now=T0 + 99 * HOUR, limit=10))
    assert later.published == []


async def test_a_manual_resume_then_the_stale_timer_changes_nothing(
    h: EnrollmentHarness, scheduler: Scheduler
) -> None:
    await enrolled_in(h)
    _, stale = await pause_until(h, scheduler, 3)
    await h.when(resume_cmd())
    before = h.store.snapshot()

    outcome = await h.when(stale)
    assert (changes(outcome), answers(outcome)) == ([], ["not_paused"])
    assert h.store.snapshot() == before


async def test_a_stale_timer_does_not_end_a_later_pause(
    h: EnrollmentHarness, scheduler: Scheduler
) -> None:
    enrolled = await enrolled_in(h)
    _, stale = await pause_until(h, scheduler, 3)
    await h.when(resume_cmd())
    later = only(await h.when(pause_cmd()), EnrollmentPaused)

    outcome = await h.when(stale)
    assert (changes(outcome), answers(outcome)) == ([], ["stale_pause"])
    saved = h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.pause_id) == (Status.PAUSED, later.message_id)


async def test_a_timed_resume_for_an_exited_enrollment_changes_nothing(
    h: EnrollmentHarness, scheduler: Scheduler
) -> None:
    await enrolled_in(h)
    _, resume = await pause_until(h, scheduler, 3)
    await h.when(exit_cmd())

    outcome = await h.when(resume)
    assert (changes(outcome), answers(outcome)) == ([], ["already_exited"])
