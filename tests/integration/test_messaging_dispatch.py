"""messaging's grants on real PostgreSQL and a real SMTP server (aiosmtpd): a relay down for
longer than the grant's lease defers the send (``message.deferred``, once) and a renewal
gets it delivered once; a revoke while the relay is down cancels the send; a revoke applied
while a claim holds the send waits for it and leaves the call's outcome to answer; and
revokes racing the sender many times over: each is answered once, and a send answered as
cancelled never reached the provider."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from services.messaging.enrollment_changes import enrollments_changed
from services.messaging.ports import MessagingStore
from services.messaging.projection import EnrollmentStatus
from services.messaging.providers import OutboundEmail, SmtpProvider
from services.messaging.repository import PostgresMessagingStore
from shared.contracts import Message, utc_now
from shared.contracts.events import (
    CancelReason,
    MessageCancelled,
    MessageDeferred,
    MessageFailed,
    MessageSent,
)
from shared.uow import UnitOfWork
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.integration.test_messaging_repository import waiting_on_a_lock
from tests.integration.test_send_outcomes import (
    Messaging,
    Relay,
    enrolled_and_due,
    free_port,
    relay_on,
)
from tests.support.builders.enrollment_events import T0
from tests.support.builders.messaging_events import (
    DOMAIN,
    LEASE,
    enrollment_enrolled,
    granted,
    renewed,
    revoked,
    workflow_applied,
)
from tests.support.builders.messaging_rows import ACCOUNT, send, view
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

ENROLLMENT = uuid.UUID(int=1)


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    async with migrated_schema(test_env, "messaging") as connection:
        yield connection


def of_type(messages: list[Message], model: type[Message]) -> list[Message]:
    return [m for m in messages if isinstance(m, model)]


async def test_a_relay_down_past_the_lease_defers_once_and_a_renewal_delivers_once(
    conn: asyncpg.Connection,
) -> None:
    port = free_port()
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=port, timeout_s=5))
    await messaging.consume(
        workflow_applied(), enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT)
    )
    lapsed_s = LEASE.total_seconds() + 1

    assert await messaging.send_round() == 1  # nobody listens: retried in 2 s
    assert await messaging.send_round(after_s=lapsed_s) == 1  # the lease has lapsed
    assert await messaging.send_round(after_s=lapsed_s + 60) == 0  # waits for a renewal
    [deferred] = of_type(await messaging.published(), MessageDeferred)
    assert isinstance(deferred, MessageDeferred)
    assert deferred.payload.lease_until == T0 + LEASE
    assert deferred.payload.attempts == 1
    assert await messaging.statuses() == ["pending"]

    await messaging.consume(
        renewed(ENROLLMENT, lease_until=T0 + timedelta(seconds=lapsed_s + 60) + LEASE)
    )
    with relay_on(port, Relay()) as relay:
        assert await messaging.send_round(after_s=lapsed_s + 60) == 1

    assert len(relay.message_ids) == 1
    [sent] = of_type(await messaging.published(), MessageSent)
    assert isinstance(sent, MessageSent)
    assert sent.payload.dispatch_id == deferred.payload.dispatch_id
    assert await messaging.statuses() == ["sent"]


async def test_a_revoke_while_the_relay_is_down_cancels_the_send_and_nothing_goes_out(
    conn: asyncpg.Connection,
) -> None:
    port = free_port()
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=port, timeout_s=5))
    await messaging.consume(
        workflow_applied(), enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT)
    )
    assert await messaging.send_round() == 1  # connection refused: pending again

    await messaging.consume(revoked(ENROLLMENT))

    [cancelled] = of_type(await messaging.published(), MessageCancelled)
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.DISPATCH_REVOKED
    with relay_on(port, Relay()) as relay:
        assert await messaging.send_round(after_s=2) == 0
    assert relay.message_ids == []
    assert await messaging.statuses() == ["cancelled"]


async def test_a_revoke_applied_during_a_claim_waits_for_it_and_stops_nothing(
    conn: asyncpg.Connection, test_env: SessionEnv
) -> None:
    """The claim commits ``sending`` first: the call's outcome answers the revoke."""
    schema = await conn.fetchval("SELECT current_schema()")
    other = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
    try:
        sender = PostgresMessagingStore(conn)
        one = send(ENROLLMENT, lease_until=utc_now() + LEASE)
        await sender.save_enrollments([view(ENROLLMENT)])
        await sender.add_pending_sends([one], now=utc_now() - timedelta(seconds=1))
        claim = conn.transaction()
        await claim.start()
        [claimed] = await sender.claim_due(now=utc_now(), limit=10)
        attempt = replace(claimed.send, attempt_id=uuid.uuid4())
        await sender.mark_sending([attempt], until=utc_now() + timedelta(minutes=1))

        consumer: UnitOfWork[MessagingStore] = UnitOfWork(other, PostgresMessagingStore(other))

        async def apply_revoke() -> None:
            async with other.transaction():
                await enrollments_changed(
                    consumer, [revoked(ENROLLMENT, account=ACCOUNT)], utc_now()
                )

        applied = asyncio.create_task(apply_revoke())
        assert await eventually(
            lambda: waiting_on_a_lock(test_env, other.get_server_pid()),
            what="the revoke to wait on the claim's lock",
        )
        await claim.commit()
        await asyncio.wait_for(applied, timeout=5)

        assert consumer.outgoing == []  # no cancel: the call under way answers
        row = await conn.fetchrow("SELECT status FROM sends")
        assert row is not None
        assert row["status"] == "sending"
        views = await sender.enrollments_for_update([(ACCOUNT, ENROLLMENT)])
        assert views[(ACCOUNT, ENROLLMENT)].status is EnrollmentStatus.EXITED
    finally:
        await other.close()


class Recording:
    """A provider that accepts everything and keeps the Message-IDs it was handed."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []

    async def send(self, email: OutboundEmail) -> None:
        self.message_ids.append(email.message_id)
        await asyncio.sleep(0)  # let the consumer in while the call is under way


async def test_revokes_racing_the_sender_are_each_answered_once_and_never_after_a_call(
    conn: asyncpg.Connection, test_env: SessionEnv
) -> None:
    schema = await conn.fetchval("SELECT current_schema()")
    other = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
    provider = Recording()
    sender = Messaging(conn, provider)  # type: ignore[arg-type]
    consumer = Messaging(other, provider)  # type: ignore[arg-type]
    count = 200
    try:
        applied, *enrolled = (
            m for m in enrolled_and_due(count) if m.type != "enrollment.step_granted"
        )
        await consumer.consume(applied, *enrolled)
        revokes_done = asyncio.Event()
        pause = random.Random(7)

        async def grant_then_revoke() -> None:
            # Each step is granted, then revoked a moment later while the sender runs.
            for n in range(count):
                await consumer.consume(granted(uuid.UUID(int=n + 1)))
                await asyncio.sleep(pause.choice((0, 0, 0.0005, 0.001, 0.002)))
                await consumer.consume(revoked(uuid.UUID(int=n + 1)))
            revokes_done.set()

        async def send_until_done() -> None:
            # Rounds back to back while the revokes go on, then until none claims anything.
            while True:
                claimed = await sender.send_round()
                if not claimed and revokes_done.is_set():
                    return

        await asyncio.wait_for(asyncio.gather(grant_then_revoke(), send_until_done()), timeout=120)
        published = await sender.published()
    finally:
        await other.close()

    outcomes: dict[uuid.UUID, list[Message]] = {}
    for message in published:
        if isinstance(message, MessageSent | MessageCancelled | MessageFailed):
            outcomes.setdefault(message.payload.enrollment_id, []).append(message)
    assert len(outcomes) == count
    assert all(len(answers) == 1 for answers in outcomes.values()), "one answer per revoke"
    called = set(provider.message_ids)
    assert len(called) == len(provider.message_ids), "no send reached the provider twice"
    for enrollment_id, [answer] in outcomes.items():
        message_id = f"<{enrollment_id}.0@{DOMAIN}>"
        if isinstance(answer, MessageCancelled):
            assert answer.payload.reason is CancelReason.DISPATCH_REVOKED
            assert message_id not in called, "a send answered as cancelled was called"
        else:
            assert isinstance(answer, MessageSent)
            assert message_id in called
    statuses = sorted(await sender.statuses())
    assert statuses == ["cancelled"] * (count - len(called)) + ["sent"] * len(called)
    # The race went both ways: some calls started before their revoke, some never did.
    assert 0 < len(called) < count, f"{len(called)} of {count} sent"
