"""The SMS balance on real PostgreSQL, through messaging's handlers and sender: an exit
refunds exactly the unsent reserved segments (once, however often it arrives), never the
segments of a step that was sent."""

from __future__ import annotations

import uuid
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
