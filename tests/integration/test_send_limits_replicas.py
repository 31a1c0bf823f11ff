"""A send limit shared by two messaging replicas on real PostgreSQL: two senders on two
connections claim one sender's queue concurrently (injected clock, no 24-hour wait). Never
more than the limit goes out in any 24 hours, nothing is dropped, and what goes out when
capacity frees is always the oldest due sends."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from services.messaging.handlers import build_handlers
from services.messaging.ports import MessagingStore
from services.messaging.repository import PostgresMessagingStore
from services.messaging.send_limits import Limits
from services.messaging.sender import Sender
from shared.contracts import Message
from shared.contracts.inbound import Channel
from shared.outbox import write_outbox
from shared.uow import UnitOfWork
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_events import T0
from tests.support.builders.messaging_events import (
    enrollment_enrolled,
    granted,
    messaging_settings,
    workflow_applied,
)
from tests.support.fakes.messaging_harness import FakeProvider

pytestmark = pytest.mark.integration

DAY = timedelta(hours=24)
FAR = T0 + 10 * DAY


class Replica:
    """One messaging replica's sender on its own connection (claims a few at a time)."""

    def __init__(
        self, conn: asyncpg.Connection, provider: FakeProvider, limits: Limits, claim: int
    ) -> None:
        self.conn = conn
        self.handlers = build_handlers(messaging_settings())
        self.sender = Sender(
            {Channel.EMAIL: provider},
            clock=lambda: self.now,
            concurrency=claim,
            batch_size=claim,
            limits=limits,
        )
        self.now = T0

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork[MessagingStore]]:
        async with self.conn.transaction():
            uow: UnitOfWork[MessagingStore] = UnitOfWork(
                self.conn, PostgresMessagingStore(self.conn)
            )
            yield uow
            await write_outbox(self.conn, uow.outgoing)

    async def consume(self, message: Message, *, at: datetime) -> None:
        async with self.begin() as uow:
            await self.handlers[message.type](uow, [message], at)

    async def send_round(self, *, at: datetime) -> int:
        self.now = at
        return await self.sender.process(self.begin, now=at)


@contextlib.asynccontextmanager
async def two_replicas(
    test_env: SessionEnv, provider: FakeProvider, limits: Limits, claim: int
) -> AsyncIterator[tuple[Replica, Replica]]:
    async with migrated_schema(test_env, "messaging") as first:
        schema = await first.fetchval("SELECT current_schema()")
        second = await asyncpg.connect(
            test_env.database_url, server_settings={"search_path": schema}
        )
        try:
            yield (
                Replica(first, provider, limits, claim),
                Replica(second, provider, limits, claim),
            )
        finally:
            await second.close()


async def queue(replica: Replica, count: int) -> list[uuid.UUID]:
    """``count`` granted steps of one sender, due one second apart: their due order."""
    await replica.consume(workflow_applied(), at=T0)
    due_order = []
    for n in range(count):
        enrollment = uuid.uuid4()
        at = T0 + timedelta(seconds=n)
        await replica.consume(enrollment_enrolled(enrollment), at=at)
        await replica.consume(granted(enrollment, lease_until=FAR), at=at)
        due_order.append(enrollment)
    return due_order


async def drain(replicas: tuple[Replica, Replica], *, at: datetime) -> None:
    """Both replicas claim at once, again and again, until neither finds anything due."""
    for _ in range(200):
        claimed = await asyncio.gather(*(r.send_round(at=at) for r in replicas))
        if not any(claimed):
            return
    raise AssertionError("the replicas never ran out of claimable sends")


def accepted(provider: FakeProvider) -> list[uuid.UUID]:
    """The enrollments whose step the provider accepted (Message-ID <enrollment.step@...>)."""
    return [uuid.UUID(email.message_id[1:].split(".")[0]) for email in provider.accepted]


@pytest.mark.parametrize(("count", "limit", "claim"), [(12, 5, 3), (60, 25, 4)])
async def test_two_replicas_share_one_senders_limit_and_send_the_oldest_first(
    test_env: SessionEnv, count: int, limit: int, claim: int
) -> None:
    provider = FakeProvider()
    async with two_replicas(test_env, provider, Limits(default=limit), claim) as replicas:
        due_order = await queue(replicas[0], count)
        start = T0 + timedelta(minutes=5)
        days = 0
        while len(provider.accepted) < count:
            before = len(provider.accepted)
            await drain(replicas, at=start + days * DAY)
            went = accepted(provider)[before:]
            # Never over the limit in a day; exactly the oldest waiting ones, all of them
            # once capacity frees (each day's capacity is used in full while any wait).
            assert len(went) == min(limit, count - before)
            assert sorted(went, key=due_order.index) == due_order[before : before + len(went)]
            # Nothing more goes out until the day's first call leaves the window.
            await drain(replicas, at=start + days * DAY + DAY - timedelta(seconds=1))
            assert len(provider.accepted) == before + len(went)
            days += 1
        assert sorted(accepted(provider), key=due_order.index) == due_order  # nothing dropped
        assert len(set(accepted(provider))) == count  # and nothing twice
        sent = await replicas[0].conn.fetchval("SELECT count(*) FROM sends WHERE status='sent'")
        assert sent == count
        assert replicas[0].sender.stats.sent + replicas[1].sender.stats.sent == count
        # The replicas did contend for the sender's capacity (some claims had to wait).
        assert replicas[0].sender.stats.waited_for_limit + replicas[1].sender.stats.waited_for_limit
