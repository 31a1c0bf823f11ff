"""The scheduler's timer SQL on the real database: re-arming after a pause, cancelling,
whole runs in one statement, and firing each due timer once across concurrent replicas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.scheduler import repository
from services.scheduler.timers import step_due_message
from shared.contracts import RecordRef, RecordType, utc_now
from shared.contracts.events import StepScheduledPayload
from shared.contracts.inbound import Channel
from shared.migrations import migrate
from tests.conftest import SessionEnv

pytestmark = pytest.mark.integration

ACCOUNT = "acc"
MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "scheduler" / "migrations"


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    schema = f"sched_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(
        test_env.database_url, server_settings={"search_path": schema}
    )
    await migrate(connection, schema=schema, service_dir=MIGRATIONS)
    yield connection
    await connection.execute(f"DROP SCHEMA {schema} CASCADE")
    await connection.close()


def step(enrollment_id: uuid.UUID, *, due_in_s: float, index: int = 0) -> StepScheduledPayload:
    return at(enrollment_id, utc_now() + timedelta(seconds=due_in_s), index=index)


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


async def state(conn: asyncpg.Connection, enrollment_id: uuid.UUID) -> str:
    return str(
        await conn.fetchval("SELECT state FROM timers WHERE enrollment_id = $1", enrollment_id)
    )


async def arm(
    conn: asyncpg.Connection, *steps: StepScheduledPayload, account: str = ACCOUNT
) -> None:
    await repository.upsert_timers(conn, [(account, s) for s in steps])


async def timers(conn: asyncpg.Connection) -> dict[uuid.UUID, tuple[str, datetime, str | None]]:
    rows = await conn.fetch("SELECT enrollment_id, state, due_at, cancelled_reason FROM timers")
    return {r["enrollment_id"]: (r["state"], r["due_at"], r["cancelled_reason"]) for r in rows}


async def test_a_paused_timer_is_re_armed_on_resume_even_with_the_same_due_time(
    conn: asyncpg.Connection,
) -> None:
    enrollment_id = uuid.uuid4()
    scheduled = step(enrollment_id, due_in_s=3600)
    await arm(conn, scheduled)
    assert await repository.cancel_pending(conn, {(ACCOUNT, enrollment_id): "paused"}) == {
        (ACCOUNT, enrollment_id): 1
    }
    assert await state(conn, enrollment_id) == "cancelled"
    await arm(conn, scheduled)
    assert await state(conn, enrollment_id) == "pending"


async def test_a_fired_timer_is_re_armed_only_for_a_new_due_time(conn: asyncpg.Connection) -> None:
    enrollment_id = uuid.uuid4()
    scheduled = step(enrollment_id, due_in_s=-1)
    await arm(conn, scheduled)
    fired = await repository.fire_due(conn, now=utc_now(), limit=10)
    assert [row["enrollment_id"] for row in fired] == [enrollment_id]
    await arm(conn, scheduled)  # a replay changes nothing
    assert await state(conn, enrollment_id) == "fired"
    await arm(conn, step(enrollment_id, due_in_s=60))
    assert await state(conn, enrollment_id) == "pending"


async def test_concurrent_replicas_fire_each_due_timer_once(
    conn: asyncpg.Connection, test_env: SessionEnv
) -> None:
    ids = [uuid.uuid4() for _ in range(300)]
    await arm(conn, *(step(enrollment_id, due_in_s=-1) for enrollment_id in ids))
    schema = await conn.fetchval("SELECT current_schema()")

    async def replica() -> list[uuid.UUID]:
        other = await asyncpg.connect(
            test_env.database_url, server_settings={"search_path": schema}
        )
        fired: list[uuid.UUID] = []
        try:
            while True:
                async with other.transaction():
                    rows = await repository.fire_due(other, now=utc_now(), limit=25)
                if not rows:
                    return fired
                fired.extend(row["enrollment_id"] for row in rows)
        finally:
            await other.close()

    results = await asyncio.gather(*(replica() for _ in range(3)))
    everything = [i for result in results for i in result]
    assert sorted(everything) == sorted(ids)
    assert len(set(everything)) == len(ids)


async def test_one_upsert_applies_a_whole_run_with_the_one_by_one_semantics(
    conn: asyncpg.Connection,
) -> None:
    new, cancelled, replayed, moved, pending = (uuid.uuid4() for _ in range(5))
    now = utc_now()
    past, later = now - timedelta(seconds=1), now + timedelta(hours=1)
    await arm(conn, at(cancelled, later), at(replayed, past), at(moved, past), at(pending, later))
    await repository.cancel_pending(conn, {(ACCOUNT, cancelled): "paused"})
    assert len(await repository.fire_due(conn, now=now, limit=10)) == 2  # replayed, moved

    await arm(
        conn,
        at(new, later),
        at(cancelled, later),  # re-armed even with the same due time
        at(replayed, past),  # fired for this very due time: unchanged
        at(moved, later),  # fired, but scheduled again for a new time: re-armed
        at(pending, later + timedelta(hours=1)),  # pending: unchanged
    )

    assert await timers(conn) == {
        new: ("pending", later, None),
        cancelled: ("pending", later, None),
        replayed: ("fired", past, None),
        moved: ("pending", later, None),
        pending: ("pending", later, None),
    }


async def test_the_same_step_twice_in_a_run_is_applied_in_order(conn: asyncpg.Connection) -> None:
    once_again, twice = uuid.uuid4(), uuid.uuid4()
    now = utc_now()
    past, later = now - timedelta(seconds=1), now + timedelta(hours=1)
    await arm(conn, at(twice, past))
    await repository.fire_due(conn, now=now, limit=10)

    # In order: the replay of the fired time changes nothing, then the new time re-arms.
    await arm(conn, at(once_again, later), at(twice, past), at(once_again, later), at(twice, later))

    assert await timers(conn) == {
        once_again: ("pending", later, None),
        twice: ("pending", later, None),
    }


async def test_a_run_of_stops_ends_and_cancels_many_enrollments_at_once(
    conn: asyncpg.Connection,
) -> None:
    exited, paused, untouched = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await arm(
        conn,
        step(exited, due_in_s=60, index=0),
        step(exited, due_in_s=120, index=1),
        step(paused, due_in_s=60),
        step(untouched, due_in_s=60),
    )
    await repository.mark_ended(conn, {(ACCOUNT, exited): "completed"})

    await repository.mark_ended(conn, {(ACCOUNT, exited): "exited", (ACCOUNT, paused): "completed"})
    counts = await repository.cancel_pending(
        conn, {(ACCOUNT, exited): "exited", (ACCOUNT, paused): "paused"}
    )

    assert counts == {(ACCOUNT, exited): 2, (ACCOUNT, paused): 1}
    outcomes = await conn.fetch("SELECT enrollment_id, outcome FROM ended_enrollments")
    assert {r["enrollment_id"]: r["outcome"] for r in outcomes} == {
        exited: "completed",  # the first outcome recorded stays
        paused: "completed",
    }
    assert await repository.ended_among(
        conn, [(ACCOUNT, exited), (ACCOUNT, untouched), (ACCOUNT, paused)]
    ) == {(ACCOUNT, exited), (ACCOUNT, paused)}
    states = await conn.fetch("SELECT enrollment_id, state, cancelled_reason FROM timers")
    assert sorted(
        (r["enrollment_id"] == untouched, r["state"], r["cancelled_reason"]) for r in states
    ) == [
        (False, "cancelled", "exited"),
        (False, "cancelled", "exited"),
        (False, "cancelled", "paused"),
        (True, "pending", None),
    ]


async def test_two_accounts_timers_for_one_enrollment_id_stay_apart(
    conn: asyncpg.Connection,
) -> None:
    shared_id, other = uuid.uuid4(), "other-acc"
    due = utc_now() - timedelta(seconds=1)
    # One run arms both: the same (enrollment, step) of two accounts are two timers.
    await repository.upsert_timers(
        conn, [(ACCOUNT, at(shared_id, due)), (other, at(shared_id, due))]
    )
    assert await conn.fetchval("SELECT count(*) FROM timers") == 2

    await repository.mark_ended(conn, {(other, shared_id): "exited"})
    counts = await repository.cancel_pending(conn, {(other, shared_id): "exited"})

    assert counts == {(other, shared_id): 1}
    assert await repository.ended_among(conn, [(ACCOUNT, shared_id), (other, shared_id)]) == {
        (other, shared_id)
    }
    fired = await repository.fire_due(conn, now=utc_now(), limit=10)
    assert [(row["account_id"], row["enrollment_id"]) for row in fired] == [(ACCOUNT, shared_id)]
    rows = await conn.fetch("SELECT account_id, state, cancelled_reason FROM timers")
    assert {r["account_id"]: (r["state"], r["cancelled_reason"]) for r in rows} == {
        ACCOUNT: ("fired", None),
        other: ("cancelled", "exited"),
    }
    # Were the other's timer re-armed and fired, its step.due would not be taken for ours.
    theirs = {**fired[0], "account_id": other}
    assert step_due_message(fired[0]).message_id != step_due_message(theirs).message_id
