"""Messaging's SQL where only PostgreSQL can say: the share lock that makes the claim-time
re-check hold when the consumer locks many enrollments at once (an exit being applied
waits for the claim's short transaction, never for a provider call: none runs inside it),
and claims that skip instead of waiting. What the fake store does alike is in
tests/contract."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from services.messaging.projection import EnrollmentStatus
from services.messaging.repository import PostgresMessagingStore
from shared.contracts import utc_now
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.messaging_rows import ACCOUNT, send, view
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    async with migrated_schema(test_env, "messaging") as connection:
        yield connection


@pytest.fixture
async def other(
    conn: asyncpg.Connection, test_env: SessionEnv
) -> AsyncIterator[asyncpg.Connection]:
    """A second connection to the same schema (another transaction)."""
    schema = await conn.fetchval("SELECT current_schema()")
    connection = await asyncpg.connect(
        test_env.database_url, server_settings={"search_path": schema}
    )
    yield connection
    await connection.close()


async def waiting_on_a_lock(test_env: SessionEnv, pid: int) -> bool:
    """Whether backend ``pid`` is blocked on a lock (asked from a fresh connection)."""
    probe = await asyncpg.connect(test_env.database_url)
    try:
        kind = await probe.fetchval(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
        )
    finally:
        await probe.close()
    return bool(kind == "Lock")


async def test_an_exit_applied_during_a_claim_waits_for_it_and_the_next_claim_sees_it(
    conn: asyncpg.Connection, other: asyncpg.Connection, test_env: SessionEnv
) -> None:
    """The send-time re-check holds with the run's one lock of many projection rows."""
    sending, bystander = uuid.uuid4(), uuid.uuid4()
    sender, consumer = PostgresMessagingStore(conn), PostgresMessagingStore(other)
    await sender.save_enrollments([view(sending), view(bystander)])
    await sender.add_pending_sends([send(sending)], now=utc_now() - timedelta(seconds=1))

    sender_tx = conn.transaction()
    await sender_tx.start()
    [claimed] = await sender.claim_due(now=utc_now(), limit=10)
    assert claimed.enrollment_status is EnrollmentStatus.ACTIVE

    async def apply_exit() -> None:
        async with other.transaction():
            await consumer.enrollments_for_update([(ACCOUNT, bystander), (ACCOUNT, sending)])
            await consumer.save_enrollments([view(sending, EnrollmentStatus.EXITED)])

    exit_applied = asyncio.create_task(apply_exit())
    # The exit blocks on the sender's lock rather than racing past it.
    assert await eventually(
        lambda: waiting_on_a_lock(test_env, other.get_server_pid()),
        what="the exit to wait on the sender's lock",
    )
    assert not exit_applied.done()
    await sender_tx.commit()
    await asyncio.wait_for(exit_applied, timeout=5)

    async with conn.transaction():
        [again] = await sender.claim_due(now=utc_now(), limit=10)
    assert again.enrollment_status is EnrollmentStatus.EXITED


async def test_a_claim_skips_a_send_whose_enrollment_the_consumer_holds(
    conn: asyncpg.Connection, other: asyncpg.Connection
) -> None:
    held, free = uuid.uuid4(), uuid.uuid4()
    sender, consumer = PostgresMessagingStore(conn), PostgresMessagingStore(other)
    await sender.save_enrollments([view(held), view(free)])
    await sender.add_pending_sends([send(held), send(free)], now=utc_now() - timedelta(seconds=1))

    async with other.transaction():
        await consumer.enrollments_for_update([(ACCOUNT, held)])
        async with conn.transaction():
            claimed = await sender.claim_due(now=utc_now(), limit=10)

    assert [c.send.enrollment_id for c in claimed] == [free]
