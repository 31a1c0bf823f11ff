"""Timed pauses on the scheduler's fake store: a pause with ``until`` arms a resume timer,
which fires ``enrollment.resume`` once at that time; a resume, exit or completion before
then voids it.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from services.scheduler.domain import resume_id
from services.scheduler.handlers import build_handlers
from services.scheduler.timers import fire_round
from shared.contracts import SYSTEM_ACTOR, Message
from shared.contracts.commands import Resume
from tests.support.builders.enrollment_events import (
    ACCOUNT,
    OTHER_ACCOUNT,
    T0,
    completed,
    exited,
    paused,
    resumed,
)
from tests.support.fakes.scheduler import FakeSchedulerStore
from tests.support.harness import Harness, Outcome

pytestmark = pytest.mark.handler

Scheduler = Harness[FakeSchedulerStore]
UNTIL = T0 + timedelta(hours=2)


@pytest.fixture
def h() -> Scheduler:
    return Harness(build_handlers(), FakeSchedulerStore, now=T0)


async def fire_at(h: Scheduler, delta: timedelta) -> Outcome:
    """One round of the due-timer loop with the clock at ``T0 + delta``."""
    _, outcome = await h.step(lambda uow: fire_round(uow, now=T0 + delta, limit=100))
    return outcome


def states(h: Scheduler) -> dict[uuid.UUID, str]:
    """Each resume timer's state, by pause."""
    return {pause_id: state for (_, _, pause_id), (_, state) in h.store.resumes.items()}


async def test_a_timed_pause_arms_a_resume_timer_that_fires_once_at_its_end(
    h: Scheduler,
) -> None:
    enrollment_id = uuid.uuid4()
    pause = paused(enrollment_id, until=UNTIL)

    assert (await h.when(pause)).published == []
    assert states(h) == {pause.message_id: "pending"}
    assert (await fire_at(h, timedelta(hours=1))).published == []  # not yet

    [command] = (await fire_at(h, timedelta(hours=2))).published

    assert isinstance(command, Resume)
    assert command.account_id == ACCOUNT
    assert command.message_id == resume_id(ACCOUNT, enrollment_id, pause.message_id)
    assert (command.payload.enrollment_id, command.payload.pause_id) == (
        enrollment_id,
        pause.message_id,
    )
    assert (command.payload.record, command.payload.workflow_id) == (
        pause.payload.record,
        pause.payload.workflow_id,
    )
    assert command.payload.actor == SYSTEM_ACTOR
    assert command.causation_id == pause.message_id
    assert command.partition_key() == pause.partition_key()  # the record's order
    assert (await fire_at(h, timedelta(days=1))).published == []  # once
    assert states(h) == {pause.message_id: "fired"}
    # The pause seen again (a replay) arms nothing: the timer fired.
    await h.when(pause)
    assert (await fire_at(h, timedelta(days=2))).published == []


async def test_a_pause_without_an_end_arms_nothing(h: Scheduler) -> None:
    await h.when(paused(uuid.uuid4()))

    assert h.store.resumes == {}
    assert h.store.calls == ["cancel_pending"]


@pytest.mark.parametrize("ending", [resumed, exited, completed])
async def test_a_resume_exit_or_completion_before_the_end_voids_the_timer(
    h: Scheduler, ending: Callable[[uuid.UUID], Message]
) -> None:
    enrollment_id = uuid.uuid4()
    await h.when(paused(enrollment_id, until=UNTIL))

    await h.when(ending(enrollment_id))

    assert h.store.resumes == {}
    assert (await fire_at(h, timedelta(days=1))).published == []


async def test_a_resume_voids_the_timer_in_one_statement_more(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()
    await h.when(paused(enrollment_id, until=UNTIL))
    h.store.calls.clear()

    await h.when(resumed(enrollment_id))

    assert h.store.calls == ["cancel_pending", "drop_resumes"]


async def test_a_run_of_pauses_and_resumes_leaves_only_the_last_pause_armed(
    h: Scheduler,
) -> None:
    enrollment_id, other_id = uuid.uuid4(), uuid.uuid4()
    first = paused(enrollment_id, until=UNTIL)
    second = paused(enrollment_id, until=UNTIL + timedelta(hours=1))
    others = paused(other_id, until=UNTIL)
    h.store.calls.clear()

    await h.when(first, others, resumed(enrollment_id), second, first, exited(other_id))

    assert states(h) == {first.message_id: "pending"}  # the replayed first pause came last
    assert h.store.calls == ["mark_ended", "cancel_pending", "arm_resumes"]


async def test_a_stale_pause_timer_is_voided_by_the_next_pause(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()
    first = paused(enrollment_id, until=UNTIL)
    await h.when(first)
    second = paused(enrollment_id, until=UNTIL + timedelta(hours=5))

    await h.when(second)

    assert states(h) == {second.message_id: "pending"}
    [command] = (await fire_at(h, timedelta(days=1))).published
    assert isinstance(command, Resume)
    assert command.payload.pause_id == second.message_id


async def test_resume_timers_never_cross_accounts(h: Scheduler) -> None:
    enrollment_id = uuid.uuid4()
    ours = paused(enrollment_id, until=UNTIL)
    await h.when(ours, paused(enrollment_id, OTHER_ACCOUNT, until=UNTIL))

    await h.when(resumed(enrollment_id, OTHER_ACCOUNT))

    [command] = (await fire_at(h, timedelta(days=1))).published
    assert isinstance(command, Resume)
    assert (command.account_id, command.payload.pause_id) == (ACCOUNT, ours.message_id)
