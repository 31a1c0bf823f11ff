"""The sender on real PostgreSQL and a real SMTP server (aiosmtpd): a relay down and then
up, 4xx then 2xx, a permanent 5xx, a crash between the provider call and the outcome, and
a step due before its workflow version. Every due email is delivered once."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from services.messaging.config import MessagingSettings
from services.messaging.handlers import build_handlers
from services.messaging.ports import MessagingStore
from services.messaging.providers import OutboundEmail, SmtpProvider
from services.messaging.repository import PostgresMessagingStore
from services.messaging.sender import Sender
from shared.contracts import Message, decode
from shared.contracts.events import FailureKind, MessageFailed, MessageSent
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
from tests.support.fakes.messaging_harness import Crash

pytestmark = pytest.mark.integration

BOUNCING = "nobody@bounce.test"


class Relay:
    """An aiosmtpd handler: refuses ``BOUNCING`` for good, answers 4xx to the first
    ``busy`` recipients, keeps every message it accepted."""

    def __init__(self, busy: int = 0) -> None:
        self.busy = busy
        self.message_ids: list[str] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if address == BOUNCING:
            return "550 5.1.1 <nobody@bounce.test>: user unknown"
        if self.busy > 0:
            self.busy -= 1
            return "451 4.7.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        received = message_from_bytes(envelope.original_content, policy=default)
        self.message_ids.append(str(received["Message-ID"]))
        return "250 accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def relay_on(port: int, relay: Relay) -> Iterator[Relay]:
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


class Messaging:
    """messaging's handlers and sender on one connection of a fresh schema."""

    def __init__(self, conn: asyncpg.Connection, provider: SmtpProvider) -> None:
        self.conn = conn
        self.settings: MessagingSettings = messaging_settings()
        self.handlers = build_handlers(self.settings)
        self.now = T0
        self.sender = Sender(
            {Channel.EMAIL: provider}, clock=lambda: self.now, timeout_s=5.0, concurrency=50
        )

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork[MessagingStore]]:
        async with self.conn.transaction():
            uow: UnitOfWork[MessagingStore] = UnitOfWork(
                self.conn, PostgresMessagingStore(self.conn)
            )
            yield uow
            await write_outbox(self.conn, uow.outgoing)

    async def consume(self, *messages: Message) -> None:
        for message in messages:
            async with self.begin() as uow:
                await self.handlers[message.type](uow, [message], self.now)

    async def send_round(self, *, after_s: float = 0) -> int:
        self.now = T0 + timedelta(seconds=after_s)
        return await self.sender.process(self.begin, now=self.now)

    async def published(self) -> list[Message]:
        rows = await self.conn.fetch("SELECT topic, value FROM outbox ORDER BY id")
        decoded = [decode(row["value"], topic=row["topic"]) for row in rows]
        return [message for message in decoded if isinstance(message, Message)]

    async def statuses(self) -> list[str]:
        return [r["status"] for r in await self.conn.fetch("SELECT status FROM sends")]


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    async with migrated_schema(test_env, "messaging") as connection:
        yield connection


def enrolled_and_due(count: int, *, email: str | None = None) -> list[Message]:
    messages: list[Message] = [workflow_applied()]
    for n in range(count):
        enrollment = uuid.UUID(int=n + 1)
        messages += [
            enrollment_enrolled(enrollment, email=email or f"contact{n}@example.com"),
            granted(enrollment),
        ]
    return messages


async def test_an_smtp_relay_down_then_up_gets_every_due_email_once(
    conn: asyncpg.Connection,
) -> None:
    port = free_port()
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=port, timeout_s=5))
    await messaging.consume(*enrolled_and_due(20))

    assert await messaging.send_round() == 20  # nobody listens: connection refused
    assert await messaging.statuses() == ["pending"] * 20
    assert await messaging.send_round(after_s=1) == 0  # the backoff holds them
    with relay_on(port, Relay()) as relay:
        assert await messaging.send_round(after_s=2) == 20

    assert len(relay.message_ids) == 20
    assert len(set(relay.message_ids)) == 20
    sent = [m for m in await messaging.published() if isinstance(m, MessageSent)]
    assert sorted(m.payload.provider_message_id for m in sent) == sorted(relay.message_ids)
    assert await messaging.statuses() == ["sent"] * 20


async def test_a_4xx_then_2xx_is_delivered_once(conn: asyncpg.Connection) -> None:
    port = free_port()
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=port, timeout_s=5))
    await messaging.consume(*enrolled_and_due(3))
    with relay_on(port, Relay(busy=3)) as relay:
        await messaging.send_round()
        assert relay.message_ids == []
        rows = await conn.fetch("SELECT attempts, last_error FROM sends")
        assert all(r["attempts"] == 1 and "451" in r["last_error"] for r in rows)
        await messaging.send_round(after_s=2)
    assert len(relay.message_ids) == len(set(relay.message_ids)) == 3
    assert await messaging.statuses() == ["sent"] * 3


async def test_a_permanent_5xx_fails_the_send_with_message_failed(
    conn: asyncpg.Connection,
) -> None:
    port = free_port()
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=port, timeout_s=5))
    await messaging.consume(*enrolled_and_due(1, email=BOUNCING))
    with relay_on(port, Relay()) as relay:
        await messaging.send_round()
    [failed] = [m for m in await messaging.published() if isinstance(m, MessageFailed)]
    assert failed.payload.kind is FailureKind.HARD_BOUNCE
    assert "user unknown" in failed.payload.reason
    assert (failed.payload.attempts, failed.payload.recipient) == (1, BOUNCING)
    assert relay.message_ids == []
    row = await conn.fetchrow("SELECT status, failure_kind FROM sends")
    assert row is not None
    assert (row["status"], row["failure_kind"]) == ("failed", "hard_bounce")


class CrashingSmtp(SmtpProvider):
    """Hands the message to the relay, then the process dies before recording it."""

    crash = True

    async def send(self, email: OutboundEmail) -> None:
        await super().send(email)
        if self.crash:
            self.crash = False
            raise Crash


class SmtpThatCanTell(CrashingSmtp):
    """Stands for a provider with a look-up by Message-ID (SMTP itself has none)."""

    def __init__(self, relay: Relay, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._relay = relay

    async def already_accepted(self, message_id: str) -> bool:
        return message_id in self._relay.message_ids


async def crash_then_resolve(conn: asyncpg.Connection, provider: SmtpProvider) -> Messaging:
    messaging = Messaging(conn, provider)
    await messaging.consume(*enrolled_and_due(1))
    with pytest.raises(Crash):
        await messaging.send_round()
    assert await messaging.statuses() == ["sending"]
    assert await messaging.send_round(after_s=10) == 0  # the lease still holds it
    lease = messaging.sender.lease.total_seconds()
    assert await messaging.send_round(after_s=lease) == 1
    assert await messaging.statuses() == ["sent"]
    return messaging


async def test_a_crashs_send_is_resolved_without_a_duplicate_where_the_provider_can_tell(
    conn: asyncpg.Connection,
) -> None:
    port = free_port()
    with relay_on(port, Relay()) as relay:
        provider = SmtpThatCanTell(relay, host="127.0.0.1", port=port, timeout_s=5)
        messaging = await crash_then_resolve(conn, provider)
    assert len(relay.message_ids) == 1
    assert messaging.sender.stats.sends_resolved_after_crash == 1
    assert messaging.sender.stats.sends_resent_after_crash == 0
    [sent] = [m for m in await messaging.published() if isinstance(m, MessageSent)]
    assert sent.payload.provider_message_id == relay.message_ids[0]


async def test_a_crashs_send_over_plain_smtp_goes_again_with_its_message_id_and_is_counted(
    conn: asyncpg.Connection,
) -> None:
    port = free_port()
    with relay_on(port, Relay()) as relay:
        provider = CrashingSmtp(host="127.0.0.1", port=port, timeout_s=5)
        messaging = await crash_then_resolve(conn, provider)
    assert len(relay.message_ids) == 2
    assert len(set(relay.message_ids)) == 1  # the same Message-ID: receivers may fold them
    assert messaging.sender.stats.sends_resent_after_crash == 1


async def test_a_step_due_before_its_workflow_version_is_sent_once_it_arrives(
    conn: asyncpg.Connection,
) -> None:
    port = free_port()
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=port, timeout_s=5))
    applied, *enrollment_and_due = enrolled_and_due(1)
    await messaging.consume(*enrollment_and_due)  # no workflow.applied yet: parked
    assert await messaging.statuses() == ["parked"]
    with relay_on(port, Relay()) as relay:
        assert await messaging.send_round() == 0
        await messaging.consume(applied)
        assert await messaging.send_round() == 1
    assert len(relay.message_ids) == 1
    assert await messaging.statuses() == ["sent"]
