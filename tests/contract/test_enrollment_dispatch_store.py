"""``EnrollmentStore``'s dispatch grants and pending exits: the fake and PostgreSQL
behave alike (and the SQL store's lapse scan skips rows another replica holds)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from services.enrollment.domain import Admitted, Enrollment, ScheduledStep, Status, VersionApplied
from services.enrollment.domain import definition_hash as hash_of
from services.enrollment.exits import Exited, commit_exit
from services.enrollment.ports import EnrollmentStore
from services.enrollment.repository import PostgresEnrollmentStore
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ExitReason, ExitSource
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_dispatch import LEASE, REPLY, dispatch, pending_exit
from tests.support.builders.enrollment_domain import NOW, definition, enrollment
from tests.support.fakes.enrollment import FakeEnrollmentStore

pytestmark = pytest.mark.integration

ACTOR = Actor(kind=ActorKind.API, id="test")
USER = Actor(kind=ActorKind.USER, id="u-1")
WF = definition(0, 3600, workflow_id="wf")


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[EnrollmentStore]:
    if request.param == "fake":
        yield FakeEnrollmentStore()
        return
    async with migrated_schema(test_env, "enrollment") as conn:
        yield PostgresEnrollmentStore(conn, version_cache={})


def active(record_id: str, account_id: str = "acc-a", *, current_step: int = 0) -> Enrollment:
    return enrollment(
        account_id=account_id,
        record=RecordRef(type=RecordType.CONTACT, id=record_id),
        workflow_id="wf",
        current_step=current_step,
        steps_completed=current_step,
        enrolled_at=NOW,
        next_due_at=NOW + timedelta(hours=1),
    )


async def inserted(store: EnrollmentStore, *enrollments: Enrollment) -> None:
    accounts = sorted({e.account_id for e in enrollments})
    await store.add_workflow_versions(
        [VersionApplied(a, WF, 1, hash_of(WF), ACTOR) for a in accounts]
    )
    await store.insert_enrollments(
        [Admitted(e, ScheduledStep(0, WF.steps[0], NOW), None, ACTOR) for e in enrollments]
    )


async def load(store: EnrollmentStore, e: Enrollment) -> Enrollment:
    [found] = await store.enrollments_for_update([(e.account_id, e.enrollment_id)])
    return found


def exiting(e: Enrollment, *, lease_until: timedelta = LEASE) -> Enrollment:
    """``e`` granted its current step until ``NOW + lease_until``, with an exit waiting."""
    return replace(
        e,
        dispatch=dispatch(e.current_step, lease_until=NOW + lease_until),
        pending_exit=pending_exit(),
    )


async def test_a_grant_and_a_pending_exit_survive_a_save_and_a_load(
    store: EnrollmentStore,
) -> None:
    by_trigger, by_user = active("c-1", current_step=1), active("c-2")
    await inserted(store, by_trigger, by_user)
    granted = replace(by_trigger, dispatch=dispatch(1, lease_until=NOW + LEASE))
    waiting = replace(
        by_user,
        dispatch=dispatch(0, lease_until=NOW + timedelta(seconds=1, microseconds=250)),
        pending_exit=pending_exit(
            ExitReason.MANUAL, source=ExitSource.MANUAL, actor=USER, triggering_event=None
        ),
    )

    await store.save_progress([granted, waiting])

    assert await load(store, granted) == granted
    assert await load(store, waiting) == waiting
    live = await store.live_enrollments_for_update([("acc-a", by_trigger.record)])
    assert live == [granted]
    with_trigger = replace(granted, pending_exit=pending_exit(decided_at=NOW + timedelta(1)))
    await store.save_progress([with_trigger])
    assert await load(store, with_trigger) == with_trigger
    assert with_trigger.pending_exit is not None
    assert with_trigger.pending_exit.triggering_event == REPLY


async def test_a_settled_grant_is_saved_as_none(store: EnrollmentStore) -> None:
    current = active("c-1")
    await inserted(store, current)
    await store.save_progress([exiting(current)])

    await store.save_progress([current])

    reloaded = await load(store, current)
    assert (reloaded.dispatch, reloaded.pending_exit) == (None, None)


async def test_an_exit_clears_the_grant_and_the_pending_exit_and_saves_steps_completed(
    store: EnrollmentStore,
) -> None:
    current = active("c-1", current_step=1)
    await inserted(store, current)
    waiting = exiting(current)
    await store.save_progress([waiting])
    counted = replace(waiting, steps_completed=2, dispatch=None)
    exited: Exited = commit_exit(counted, now=NOW + timedelta(seconds=3))

    await store.save_exits([exited])

    reloaded = await load(store, current)
    assert (reloaded.status, reloaded.exit_reason, reloaded.ended_at) == (
        Status.EXITED,
        ExitReason.REPLIED,
        NOW + timedelta(seconds=3),
    )
    assert (reloaded.steps_completed, reloaded.current_step) == (2, 1)
    assert (reloaded.dispatch, reloaded.pending_exit) == (None, None)
    assert (
        await store.lapsed_exits_for_update(lapsed_before=NOW + timedelta(days=1), limit=10) == []
    )


async def test_lapsed_exits_are_the_exiting_ones_past_the_bound_oldest_lease_first(
    store: EnrollmentStore,
) -> None:
    oldest = exiting(active("c-1"), lease_until=timedelta(seconds=10))
    older = exiting(active("c-1", "acc-b"), lease_until=timedelta(seconds=20))
    old = exiting(active("c-3"), lease_until=timedelta(seconds=30))
    at_the_bound = exiting(active("c-4"), lease_until=timedelta(seconds=60))
    after = exiting(active("c-5"), lease_until=timedelta(seconds=90))
    not_exiting = replace(
        active("c-6"), dispatch=dispatch(0, lease_until=NOW + timedelta(seconds=5))
    )
    no_grant = active("c-7")
    every = [after, old, not_exiting, oldest, at_the_bound, no_grant, older]
    await inserted(store, *every)
    await store.save_progress(every)
    bound = NOW + timedelta(seconds=60)

    lapsed = await store.lapsed_exits_for_update(lapsed_before=bound, limit=10)
    first_two = await store.lapsed_exits_for_update(lapsed_before=bound, limit=2)

    assert lapsed == [oldest, older, old]
    assert first_two == [oldest, older]
    assert await store.lapsed_exits_for_update(lapsed_before=NOW, limit=10) == []


async def test_the_lapse_scan_skips_exits_another_replica_holds(test_env: SessionEnv) -> None:
    """Only the SQL store locks: two replicas' rounds never commit one exit twice."""
    async with migrated_schema(test_env, "enrollment") as conn:
        store = PostgresEnrollmentStore(conn, version_cache={})
        first, second = exiting(active("c-1")), exiting(active("c-2"), lease_until=2 * LEASE)
        await inserted(store, first, second)
        await store.save_progress([first, second])
        schema = await conn.fetchval("SELECT current_schema()")
        other = await asyncpg.connect(
            test_env.database_url, server_settings={"search_path": schema}
        )
        bound = NOW + timedelta(days=1)
        try:
            async with contextlib.AsyncExitStack() as held:
                await held.enter_async_context(conn.transaction())
                mine = await store.lapsed_exits_for_update(lapsed_before=bound, limit=1)
                await held.enter_async_context(other.transaction())
                replica = PostgresEnrollmentStore(other, version_cache={})
                theirs = await replica.lapsed_exits_for_update(lapsed_before=bound, limit=10)
            assert [e.enrollment_id for e in mine] == [first.enrollment_id]
            assert [e.enrollment_id for e in theirs] == [second.enrollment_id]
        finally:
            await other.close()
