"""The scheduler's timer SQL on the real database: re-arming after a pause, cancelling,
and firing each due timer once across concurrent replicas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from services.scheduler import repository
from shared.contracts import RecordRef, RecordType, utc_now
from shared.contracts.events import StepScheduledPayload
from shared.contracts.inbound import Channel
from shared.migrations import migrate
from tests.conftest import SessionEnv

pytestmark = pytest.mark.integration

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
    return StepScheduledPayload(
        enrollment_id=enrollment_id,
        workflow_id="wf",
        workflow_version=1,
        record=RecordRef(type=RecordType.CONTACT, id="c-1"),
        step_index=index,
        step_id=f"s{index}",
        channel=Channel.EMAIL,
        due_at=utc_now() + timedelta(seconds=due_in_s),
    )


async def state(conn: asyncpg.Connection, enrollment_id: uuid.UUID) -> str:
    return str(
        await conn.fetchval("SELECT state FROM timers WHERE enrollment_id = $1", enrollment_id)
    )


async def test_a_paused_timer_is_re_armed_on_resume_even_with_the_same_due_time(
    conn: asyncpg.Connection,
) -> None:
    enrollment_id = uuid.uuid4()
    scheduled = step(enrollment_id, due_in_s=3600)
    await repository.upsert_timer(conn, "acc", scheduled)
    assert await repository.cancel_pending(conn, enrollment_id, "paused") == 1
    assert await state(conn, enrollment_id) == "cancelled"
    await repository.upsert_timer(conn, "acc", scheduled)
    assert await state(conn, enrollment_id) == "pending"


async def test_a_fired_timer_is_re_armed_only_for_a_new_due_time(conn: asyncpg.Connection) -> None:
    enrollment_id = uuid.uuid4()
    scheduled = step(enrollment_id, due_in_s=-1)
    await repository.upsert_timer(conn, "acc", scheduled)
    fired = await repository.fire_due(conn, now=utc_now(), limit=10)
    assert [row["enrollment_id"] for row in fired] == [enrollment_id]
    await repository.upsert_timer(conn, "acc", scheduled)  # a replay changes nothing
    assert await state(conn, enrollment_id) == "fired"
    await repository.upsert_timer(conn, "acc", step(enrollment_id, due_in_s=60))
    assert await state(conn, enrollment_id) == "pending"


async def test_concurrent_replicas_fire_each_due_timer_once(
    conn: asyncpg.Connection, test_env: SessionEnv
) -> None:
    ids = [uuid.uuid4() for _ in range(300)]
    for enrollment_id in ids:
        await repository.upsert_timer(conn, "acc", step(enrollment_id, due_in_s=-1))
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
