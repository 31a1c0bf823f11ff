"""``SchedulerStore``: the fake and PostgreSQL behave alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler.ports import SchedulerStore
from services.scheduler.repository import PostgresSchedulerStore
from shared.contracts import RecordRef, RecordType
from shared.contracts.events import StepScheduledPayload
from shared.contracts.inbound import Channel
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.fakes.scheduler import FakeSchedulerStore

pytestmark = pytest.mark.integration

ACCOUNT = "acc"
OTHER = "other-acc"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
PAST, LATER = NOW - timedelta(seconds=1), NOW + timedelta(hours=1)
FAR = NOW + timedelta(days=3650)


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[SchedulerStore]:
    if request.param == "fake":
        yield FakeSchedulerStore()
        return
    async with migrated_schema(test_env, "scheduler") as conn:
        yield PostgresSchedulerStore(conn)


def at(enrollment_id: uuid.UUID, due_at: datetime, *, index: int = 0) -> StepScheduledPayload:
    return StepScheduledPayload(
        enrollment_id=enrollment_id,
        workflow_id="wf",
        workflow_version=1,
        record=RecordRef(type=RecordType.CONTACT, id="c-1"),
        step_index=index,
        step_id=f"s{index}",
        channel=Channel.EMAIL,
        due_at=due_at,
    )


async def arm(store: SchedulerStore, *steps: StepScheduledPayload, account: str = ACCOUNT) -> None:
    await store.arm_timers([(account, s) for s in steps])


async def pending(store: SchedulerStore) -> dict[uuid.UUID, datetime]:
    """The pending timers and their due times (fires them all: call it last)."""
    return {t.enrollment_id: t.due_at for t in await store.fire_due(now=FAR, limit=1000)}


async def fired_now(store: SchedulerStore) -> list[uuid.UUID]:
    return [t.enrollment_id for t in await store.fire_due(now=NOW, limit=1000)]


async def test_a_paused_timer_is_re_armed_on_resume_even_with_the_same_due_time(
    store: SchedulerStore,
) -> None:
    enrollment_id = uuid.uuid4()
    await arm(store, at(enrollment_id, LATER))
    cancelled = await store.cancel_pending({(ACCOUNT, enrollment_id): "paused"})
    nothing_left = await store.cancel_pending({(ACCOUNT, enrollment_id): "paused"})
    await arm(store, at(enrollment_id, LATER))
    assert (cancelled, nothing_left) == ({(ACCOUNT, enrollment_id): 1}, {})
    assert await pending(store) == {enrollment_id: LATER}


async def test_a_fired_timer_is_re_armed_only_for_a_new_due_time(store: SchedulerStore) -> None:
    enrollment_id = uuid.uuid4()
    await arm(store, at(enrollment_id, PAST))
    fired = await store.fire_due(now=NOW, limit=10)
    await arm(store, at(enrollment_id, PAST))  # a replay changes nothing
    replayed = await pending(store)
    await arm(store, at(enrollment_id, LATER))
    assert [(t.account_id, t.enrollment_id, t.due_at) for t in fired] == [
        (ACCOUNT, enrollment_id, PAST)
    ]
    assert replayed == {}
    assert await pending(store) == {enrollment_id: LATER}


async def test_a_fired_timer_carries_everything_its_step_due_needs(store: SchedulerStore) -> None:
    enrollment_id = uuid.uuid4()
    await arm(store, at(enrollment_id, PAST, index=2))
    [timer] = await store.fire_due(now=NOW, limit=10)
    assert (timer.workflow_id, timer.workflow_version, timer.step_index, timer.step_id) == (
        "wf",
        1,
        2,
        "s2",
    )
    assert (timer.record, timer.channel) == (
        RecordRef(type=RecordType.CONTACT, id="c-1"),
        Channel.EMAIL,
    )


async def test_due_timers_fire_earliest_first_up_to_the_limit(store: SchedulerStore) -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    await arm(store, *(at(i, PAST - timedelta(minutes=n)) for n, i in enumerate(ids)))
    await arm(store, at(uuid.uuid4(), LATER))
    first = [t.enrollment_id for t in await store.fire_due(now=NOW, limit=2)]
    rest = await fired_now(store)
    assert (first, sorted(rest)) == ([ids[4], ids[3]], sorted(ids[:3]))


async def test_one_call_applies_a_whole_run_with_the_one_by_one_semantics(
    store: SchedulerStore,
) -> None:
    new, cancelled, replayed, moved, waiting = (uuid.uuid4() for _ in range(5))
    await arm(store, at(cancelled, LATER), at(replayed, PAST), at(moved, PAST), at(waiting, LATER))
    await store.cancel_pending({(ACCOUNT, cancelled): "paused"})
    assert sorted(await fired_now(store)) == sorted([replayed, moved])

    await arm(
        store,
        at(new, LATER),
        at(cancelled, LATER),  # re-armed even with the same due time
        at(replayed, PAST),  # fired for this very due time: unchanged
        at(moved, LATER),  # fired, but scheduled again for a new time: re-armed
        at(waiting, LATER + timedelta(hours=1)),  # pending: unchanged
    )

    assert await pending(store) == {new: LATER, cancelled: LATER, moved: LATER, waiting: LATER}


async def test_the_same_step_twice_in_a_run_is_applied_in_order(store: SchedulerStore) -> None:
    once_again, twice = uuid.uuid4(), uuid.uuid4()
    await arm(store, at(twice, PAST))
    await fired_now(store)

    # In order: the replay of the fired time changes nothing, then the new time re-arms.
    await arm(
        store, at(once_again, LATER), at(twice, PAST), at(once_again, LATER), at(twice, LATER)
    )

    assert await pending(store) == {once_again: LATER, twice: LATER}


async def test_a_run_of_stops_ends_and_cancels_many_enrollments_at_once(
    store: SchedulerStore,
) -> None:
    exited, paused, untouched = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await arm(
        store,
        at(exited, LATER, index=0),
        at(exited, LATER, index=1),
        at(paused, LATER),
        at(untouched, LATER),
    )
    await store.mark_ended({(ACCOUNT, exited): "completed"})

    await store.mark_ended({(ACCOUNT, exited): "exited", (ACCOUNT, paused): "completed"})
    counts = await store.cancel_pending({(ACCOUNT, exited): "exited", (ACCOUNT, paused): "paused"})

    assert counts == {(ACCOUNT, exited): 2, (ACCOUNT, paused): 1}
    assert await store.ended_among(
        [(ACCOUNT, exited), (ACCOUNT, untouched), (ACCOUNT, paused)]
    ) == {
        (ACCOUNT, exited),
        (ACCOUNT, paused),
    }
    assert await pending(store) == {untouched: LATER}


async def test_empty_runs_change_nothing(store: SchedulerStore) -> None:
    await store.arm_timers([])
    await store.mark_ended({})
    assert await store.cancel_pending({}) == {}
    assert await store.ended_among([]) == set()
    assert await store.fire_due(now=NOW, limit=10) == []


async def test_two_accounts_timers_for_one_enrollment_id_stay_apart(store: SchedulerStore) -> None:
    shared_id = uuid.uuid4()
    # One run arms both: the same (enrollment, step) of two accounts are two timers.
    await store.arm_timers([(ACCOUNT, at(shared_id, PAST)), (OTHER, at(shared_id, PAST))])

    await store.mark_ended({(OTHER, shared_id): "exited"})
    counts = await store.cancel_pending({(OTHER, shared_id): "exited"})

    assert counts == {(OTHER, shared_id): 1}
    assert await store.ended_among([(ACCOUNT, shared_id), (OTHER, shared_id)]) == {
        (OTHER, shared_id)
    }
    fired = await store.fire_due(now=NOW, limit=10)
    assert [(t.account_id, t.enrollment_id) for t in fired] == [(ACCOUNT, shared_id)]
