"""The SMS balance on real PostgreSQL, through messaging's handlers and sender: an exit
refunds exactly the unsent reserved segments (once, however often it arrives), never the
segments of a step that was sent; exits racing the sender end each reservation once,
debited or refunded, and the balance stays the sum of its movements."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.messaging.providers import OutboundEmail, SmtpProvider
from services.messaging.sender import Sender
from services.messaging.sms_balance import sms_segments
from shared.contracts import RecordType
from shared.contracts.events import (
    EnrollmentStepScheduled,
    MessageSent,
    StepScheduledPayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import Channel
from shared.contracts.sms_balance import RefundReason, SmsBalanceRefunded
from shared.contracts.workflow import Step, WorkflowDefinition
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.integration.test_send_outcomes import Messaging
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER, exited, ref
from tests.support.builders.messaging_events import WORKFLOW, enrollment_enrolled, granted
from tests.support.builders.sms_balance import credit

pytestmark = pytest.mark.integration

SENT, UNSENT = uuid.UUID(int=1), uuid.UUID(int=2)
BODY = "Your order is on its way. " * 12  # 312 GSM-7 characters: 3 segments


class AcceptingSms:
    """An SMS provider that accepts every message."""

    def __init__(self) -> None:
        self.accepted: list[OutboundEmail] = []

    async def send(self, email: OutboundEmail) -> str | None:
        self.accepted.append(email)
        return None


def sms_workflow() -> WorkflowApplied:
    definition = WorkflowDefinition(
        workflow_id=WORKFLOW,
        name="Shipping",
        record_type=RecordType.CONTACT,
        steps=(Step(step_id="long", channel=Channel.SMS, body=BODY, sender="+15550100"),),
    )
    return WorkflowApplied.create(
        account_id=ACCOUNT,
        payload=WorkflowAppliedPayload(version=1, definition=definition, actor=USER),
    )


def scheduled(enrollment_id: uuid.UUID) -> EnrollmentStepScheduled:
    payload = StepScheduledPayload(
        **ref(enrollment_id), step_index=0, step_id="long", channel=Channel.SMS, due_at=T0
    )
    return EnrollmentStepScheduled.create(account_id=ACCOUNT, payload=payload)


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    async with migrated_schema(test_env, "messaging") as connection:
        yield connection


async def test_an_exit_refunds_exactly_the_unsent_segments_once(conn: asyncpg.Connection) -> None:
    assert sms_segments(BODY) == 3
    sms = AcceptingSms()
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=1, timeout_s=1))
    messaging.sender = Sender({Channel.SMS: sms}, clock=lambda: messaging.now, timeout_s=5.0)
    await messaging.consume(
        sms_workflow(),
        credit(20),
        enrollment_enrolled(SENT, phone="+14155550123"),
        enrollment_enrolled(UNSENT, phone="+14155550124"),
        scheduled(SENT),
        scheduled(UNSENT),
        granted(SENT, step_id="long", channel=Channel.SMS),
    )
    assert await messaging.send_round() == 1
    assert len(sms.accepted) == 1

    await messaging.consume(exited(SENT), exited(UNSENT), exited(UNSENT), exited(SENT))

    published = await messaging.published()
    assert len([m for m in published if isinstance(m, MessageSent)]) == 1
    refunds = [m for m in published if isinstance(m, SmsBalanceRefunded)]
    assert [(r.payload.enrollment_id, r.payload.segments, r.payload.reason) for r in refunds] == [
        (UNSENT, 3, RefundReason.ENROLLMENT_EXITED)
    ]
    balance = await conn.fetchval("SELECT balance FROM sms_balances WHERE account_id = $1", ACCOUNT)
    total = await conn.fetchval("SELECT sum(delta) FROM sms_ledger WHERE account_id = $1", ACCOUNT)
    assert (balance, total) == (17, 17)  # 20 credited, 3 sent, 3 reserved and given back
    moves = await conn.fetch(
        "SELECT kind, enrollment_id, segments FROM sms_ledger ORDER BY movement_id"
    )
    assert [(m["kind"], m["enrollment_id"], m["segments"]) for m in moves] == [
        ("credit", None, 20),
        ("reserve", SENT, 3),
        ("reserve", UNSENT, 3),
        ("debit", SENT, 3),
        ("refund", UNSENT, 3),
    ]


async def test_exits_racing_the_sender_debit_or_refund_each_reservation_exactly_once(
    conn: asyncpg.Connection, test_env: SessionEnv
) -> None:
    schema = await conn.fetchval("SELECT current_schema()")
    other = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
    sms = AcceptingSms()
    smtp = SmtpProvider(host="127.0.0.1", port=1, timeout_s=1)
    sender, consumer = Messaging(conn, smtp), Messaging(other, smtp)
    sender.sender = Sender({Channel.SMS: sms}, clock=lambda: sender.now, timeout_s=5.0)
    count, pause = 80, random.Random(11)
    enrollments = [uuid.UUID(int=n + 1) for n in range(count)]
    try:
        await consumer.consume(sms_workflow(), credit(1000))
        for n, enrollment in enumerate(enrollments):
            await consumer.consume(enrollment_enrolled(enrollment, phone=f"+1415555{n:04d}"))
        exits_done = asyncio.Event()

        async def schedule_grant_then_exit() -> None:
            for enrollment in enrollments:
                await consumer.consume(
                    scheduled(enrollment), granted(enrollment, step_id="long", channel=Channel.SMS)
                )
                await asyncio.sleep(pause.choice((0, 0, 0.0005, 0.001, 0.002)))
                await consumer.consume(exited(enrollment), exited(enrollment))
            exits_done.set()

        async def send_until_done() -> None:
            while True:
                claimed = await sender.send_round()
                if not claimed and exits_done.is_set():
                    return

        await asyncio.wait_for(
            asyncio.gather(schedule_grant_then_exit(), send_until_done()), timeout=120
        )
    finally:
        await other.close()

    sent = len(sms.accepted)
    balance = await conn.fetchval("SELECT balance FROM sms_balances WHERE account_id = $1", ACCOUNT)
    total = await conn.fetchval("SELECT sum(delta) FROM sms_ledger WHERE account_id = $1", ACCOUNT)
    assert balance == total == 1000 - 3 * sent
    states = Counter(r["state"] for r in await conn.fetch("SELECT state FROM sms_reservations"))
    assert states == +Counter({"debited": sent, "refunded": count - sent})
    ends = await conn.fetch(
        """SELECT enrollment_id, count(*) AS n FROM sms_ledger
           WHERE kind IN ('debit', 'refund') GROUP BY enrollment_id"""
    )
    assert len(ends) == count
    assert all(r["n"] == 1 for r in ends)
    assert 0 < sent < count, f"{sent} of {count} sent: the race went one way only"
