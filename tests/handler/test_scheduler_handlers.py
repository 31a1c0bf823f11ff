"""Scheduler handlers against in-memory timers: step_scheduled arms, exits and pauses void."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.scheduler import repository
from services.scheduler.handlers import build_handlers
from shared.consumer import Batched
from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    CompletedPayload,
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentStepScheduled,
    ExitedPayload,
    PausedPayload,
    StepScheduledPayload,
)
from shared.contracts.inbound import Channel
from shared.outbox import UnitOfWork

pytestmark = pytest.mark.handler

ACCOUNT = "acme-account"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
USER = Actor(kind=ActorKind.USER, id="u-1")
OTHER_ACCOUNT = "globex-account"
Key = tuple[str, uuid.UUID]
CONN = object()
"""Stands in for the pipeline's connection: the handlers must hand ``uow.conn`` on."""


@dataclass
class Timer:
    account_id: str
    step: StepScheduledPayload
    state: str = "pending"
    cancelled_reason: str | None = None


@dataclass
class FakeTimers:
    """``services.scheduler.repository`` in memory, with its SQL's semantics."""

    timers: dict[tuple[str, uuid.UUID, int], Timer] = field(default_factory=dict)
    ended: dict[Key, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def _called(self, name: str, conn: Any) -> None:
        assert conn is CONN, f"{name} was not given the unit of work's connection"
        self.calls.append(name)

    async def ended_among(self, conn: Any, keys: Collection[Key]) -> set[Key]:
        self._called("ended_among", conn)
        return {k for k in keys if k in self.ended}

    async def upsert_timers(self, conn: Any, timers: Sequence[repository.ArmTimer]) -> None:
        self._called("upsert_timers", conn)
        for account_id, step in timers:  # in order, as if one statement each
            key = (account_id, step.enrollment_id, step.step_index)
            known = self.timers.get(key)
            if known is None:
                self.timers[key] = Timer(account_id, step)
            # ON CONFLICT DO UPDATE ... WHERE state = 'cancelled'
            #                               OR (state = 'fired' AND due_at <> EXCLUDED.due_at)
            elif known.state == "cancelled" or (
                known.state == "fired" and known.step.due_at != step.due_at
            ):
                known.step = known.step.model_copy(update={"due_at": step.due_at})
                known.state, known.cancelled_reason = "pending", None

    async def cancel_pending(self, conn: Any, reasons: Mapping[Key, str]) -> Counter[Key]:
        self._called("cancel_pending", conn)
        counts: Counter[Key] = Counter()
        for (account_id, enrollment_id, _), timer in self.timers.items():
            key = (account_id, enrollment_id)
            if key in reasons and timer.state == "pending":
                timer.state, timer.cancelled_reason = "cancelled", reasons[key]
                counts[key] += 1
        return counts

    async def mark_ended(self, conn: Any, outcomes: Mapping[Key, str]) -> None:
        self._called("mark_ended", conn)
        for key, outcome in outcomes.items():
            self.ended.setdefault(key, outcome)

    def states(
        self, enrollment_id: uuid.UUID, account_id: str = ACCOUNT
    ) -> dict[int, tuple[str, str | None]]:
        return {
            i: (t.state, t.cancelled_reason)
            for (a, e, i), t in self.timers.items()
            if (a, e) == (account_id, enrollment_id)
        }


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> FakeTimers:
    fake = FakeTimers()
    for name in ("ended_among", "upsert_timers", "cancel_pending", "mark_ended"):
        monkeypatch.setattr(repository, name, getattr(fake, name))
    return fake


@pytest.fixture
def handlers(db: FakeTimers) -> Mapping[str, Batched]:
    return build_handlers()


async def run(handlers: Mapping[str, Batched], *events: Message) -> UnitOfWork:
    """Apply ``events`` as one pipeline batch: consecutive ones of a handler form a run."""
    uow = UnitOfWork(conn=CONN)  # type: ignore[arg-type]  # the fake repository needs none
    runs: list[tuple[Batched, list[Message]]] = []
    for event in events:
        handler = handlers[event.type]
        if runs and runs[-1][0] is handler:
            runs[-1][1].append(event)
        else:
            runs.append((handler, [event]))
    for handler, messages in runs:
        await handler.handle(uow, messages)
    return uow


def ref(enrollment_id: uuid.UUID) -> dict[str, Any]:
    return {
        "enrollment_id": enrollment_id,
        "workflow_id": "onboarding",
        "workflow_version": 1,
        "record": RecordRef(type=RecordType.CONTACT, id="c-1"),
    }


def scheduled(
    enrollment_id: uuid.UUID, step_index: int = 0, due_at: datetime = T0, account: str = ACCOUNT
) -> EnrollmentStepScheduled:
    payload = StepScheduledPayload(
        **ref(enrollment_id),
        step_index=step_index,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        due_at=due_at,
    )
    return EnrollmentStepScheduled.create(account_id=account, payload=payload)


def exited(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentExited:
    payload = ExitedPayload(
        **ref(enrollment_id),
        reason=ExitReason.REPLIED,
        source=ExitSource.TRIGGER,
        actor=USER,
        steps_completed=0,
    )
    return EnrollmentExited.create(account_id=account, payload=payload)


def completed(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentCompleted:
    payload = CompletedPayload(**ref(enrollment_id), steps_completed=2)
    return EnrollmentCompleted.create(account_id=account, payload=payload)


def paused(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentPaused:
    payload = PausedPayload(**ref(enrollment_id), reason="manual", actor=USER)
    return EnrollmentPaused.create(account_id=account, payload=payload)


def test_the_scheduler_follows_steps_exits_completions_and_pauses(
    handlers: Mapping[str, Batched],
) -> None:
    assert set(handlers) == {
        EnrollmentStepScheduled.TYPE,
        EnrollmentExited.TYPE,
        EnrollmentCompleted.TYPE,
        EnrollmentPaused.TYPE,
    }
    assert EnrollmentResumed.TYPE not in handlers  # a resume arrives as a new step_scheduled
    # One handler for every stop, so that mixed exits and pauses make one run.
    assert handlers[EnrollmentExited.TYPE] is handlers[EnrollmentCompleted.TYPE]
    assert handlers[EnrollmentExited.TYPE] is handlers[EnrollmentPaused.TYPE]


async def test_a_scheduled_step_arms_a_timer(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()
    event = scheduled(enrollment_id, step_index=1, due_at=T0 + timedelta(hours=2))

    uow = await run(handlers, event)

    timer = db.timers[(ACCOUNT, enrollment_id, 1)]
    assert (timer.account_id, timer.state) == (ACCOUNT, "pending")
    assert timer.step == event.payload
    assert db.calls == ["ended_among", "upsert_timers"]
    assert uow.outgoing == []  # step.due is published by the timer loop, not here


async def test_a_step_scheduled_after_the_enrollment_ended_arms_nothing(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()

    await run(handlers, exited(enrollment_id), scheduled(enrollment_id, step_index=1))

    assert db.timers == {}


@pytest.mark.parametrize(("ending", "outcome"), [(exited, "exited"), (completed, "completed")])
async def test_an_ended_enrollment_is_remembered_and_its_timers_cancelled(
    handlers: Mapping[str, Batched], db: FakeTimers, ending: Any, outcome: str
) -> None:
    enrollment_id, other = uuid.uuid4(), uuid.uuid4()
    await run(handlers, scheduled(enrollment_id), scheduled(other))

    uow = await run(handlers, ending(enrollment_id))

    assert db.ended == {(ACCOUNT, enrollment_id): outcome}
    assert db.states(enrollment_id) == {0: ("cancelled", outcome)}
    assert db.states(other) == {0: ("pending", None)}
    assert uow.outgoing == []


async def test_a_pause_cancels_timers_but_does_not_end_the_enrollment(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()
    await run(handlers, scheduled(enrollment_id, due_at=T0))

    await run(handlers, paused(enrollment_id))

    assert db.states(enrollment_id) == {0: ("cancelled", "paused")}
    assert db.ended == {}
    assert "mark_ended" not in db.calls


async def test_resuming_after_the_due_time_re_arms_the_cancelled_timer(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()
    await run(handlers, scheduled(enrollment_id, due_at=T0), paused(enrollment_id))

    # Resumed after T0: enrollment schedules the step at the resume time.
    await run(handlers, scheduled(enrollment_id, due_at=T0 + timedelta(hours=5)))

    assert db.states(enrollment_id) == {0: ("pending", None)}
    assert db.timers[(ACCOUNT, enrollment_id, 0)].step.due_at == T0 + timedelta(hours=5)


async def test_resuming_before_the_due_time_re_arms_the_cancelled_timer(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()
    due = T0 + timedelta(days=1)
    await run(handlers, scheduled(enrollment_id, due_at=due), paused(enrollment_id))

    # Resumed before ``due``: enrollment schedules the same step at the same time again.
    await run(handlers, scheduled(enrollment_id, due_at=due))

    assert db.states(enrollment_id) == {0: ("pending", None)}


# --- several messages in one run ---


async def test_a_run_of_steps_looks_up_ended_enrollments_once_and_arms_in_one_call(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    first, second, ended = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await run(handlers, exited(ended))
    db.calls.clear()

    await run(
        handlers,
        scheduled(first, step_index=0),
        scheduled(ended, step_index=1),
        scheduled(second, step_index=0),
        scheduled(first, step_index=1, due_at=T0 + timedelta(days=1)),
    )

    assert db.calls == ["ended_among", "upsert_timers"]
    assert db.states(first) == {0: ("pending", None), 1: ("pending", None)}
    assert db.states(second) == {0: ("pending", None)}
    assert db.states(ended) == {}


async def test_a_run_of_stops_ends_and_cancels_in_two_calls_the_first_stop_winning(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    paused_then_exited, completed_then_exited, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await run(
        handlers,
        scheduled(paused_then_exited),
        scheduled(completed_then_exited),
        scheduled(other),
    )
    db.calls.clear()

    await run(
        handlers,
        paused(paused_then_exited),
        completed(completed_then_exited),
        exited(paused_then_exited),
        exited(completed_then_exited),
    )

    assert db.calls == ["mark_ended", "cancel_pending"]
    assert db.states(paused_then_exited) == {0: ("cancelled", "paused")}
    assert db.states(completed_then_exited) == {0: ("cancelled", "completed")}
    assert db.ended == {
        (ACCOUNT, paused_then_exited): "exited",
        (ACCOUNT, completed_then_exited): "completed",
    }
    assert db.states(other) == {0: ("pending", None)}


async def test_a_step_then_an_exit_in_one_batch_leaves_the_timer_cancelled(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()

    await run(handlers, scheduled(enrollment_id), exited(enrollment_id))

    assert db.states(enrollment_id) == {0: ("cancelled", "exited")}
    assert db.calls == ["ended_among", "upsert_timers", "mark_ended", "cancel_pending"]


async def test_a_pause_and_a_resume_in_one_batch_re_arm_the_timer(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()

    await run(
        handlers,
        scheduled(enrollment_id, due_at=T0),
        paused(enrollment_id),
        scheduled(enrollment_id, due_at=T0 + timedelta(hours=5)),
    )

    assert db.states(enrollment_id) == {0: ("pending", None)}
    assert db.timers[(ACCOUNT, enrollment_id, 0)].step.due_at == T0 + timedelta(hours=5)


# --- accounts ---


async def test_another_accounts_stop_for_the_same_enrollment_id_touches_nothing_of_ours(
    handlers: Mapping[str, Batched], db: FakeTimers
) -> None:
    enrollment_id = uuid.uuid4()  # the same id in two accounts
    await run(handlers, scheduled(enrollment_id), scheduled(enrollment_id, account=OTHER_ACCOUNT))

    await run(handlers, exited(enrollment_id, account=OTHER_ACCOUNT))
    await run(handlers, scheduled(enrollment_id, step_index=1))

    assert db.ended == {(OTHER_ACCOUNT, enrollment_id): "exited"}
    assert db.states(enrollment_id, OTHER_ACCOUNT) == {0: ("cancelled", "exited")}
    # Ours is not ended: its timer stays and its next step still arms one.
    assert db.states(enrollment_id) == {0: ("pending", None), 1: ("pending", None)}
