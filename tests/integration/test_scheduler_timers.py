"""The scheduler's PostgreSQL store where only PostgreSQL can tell: replicas firing the
same due timers concurrently. Everything else the store does is in
tests/contract/test_scheduler_store.py, against the fake too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from services.scheduler.repository import PostgresSchedulerStore
from shared.contracts import RecordRef, RecordType, utc_now
from shared.contracts.events import StepScheduledPayload
from shared.contracts.inbound import Channel
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema

pytestmark = pytest.mark.integration

ACCOUNT = "acc"


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    async with migrated_schema(test_env, "scheduler") as connection:
        yield connection


def step(enrollment_id: uuid.UUID, *, due_in_s: float) -> StepScheduledPayload:
    return StepScheduledPayload(
        enrollment_id=enrollment_id,
        workflow_id="wf",
        workflow_version=1,
        record=RecordRef(type=RecordType.CONTACT, id="c-1"),
        step_index=0,
        step_id="s0",
        channel=Channel.EMAIL,
        due_at=utc_now() + timedelta(seconds=due_in_s),
    )


async def arm(conn: asyncpg.Connection, *steps: StepScheduledPayload) -> None:
    await PostgresSchedulerStore(conn).arm_timers([(ACCOUNT, s) for s in steps])


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
                    rows = await PostgresSchedulerStore(other).fire_due(now=utc_now(), limit=25)
                if not rows:
                    return fired
                fired.extend(timer.enrollment_id for timer in rows)
        finally:
            await other.close()

    results = await asyncio.gather(*(replica() for _ in range(3)))
    everything = [i for result in results for i in result]
    assert sorted(everything) == sorted(ids)
    assert len(set(everything)) == len(ids)
