"""SMS steps sent by messaging's sender on PostgreSQL through the Twilio-compatible
provider to a real local HTTP server: a 429 waits for its Retry-After and then goes out
with the provider's id and its segment count; a 400 fails the step at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.messaging.http_providers import TwilioProvider
from services.messaging.providers import SmtpProvider
from services.messaging.sender import Sender
from shared.contracts import Message
from shared.contracts.events import FailureKind, MessageFailed, MessageSent
from shared.contracts.inbound import Channel
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.integration.test_send_outcomes import Messaging
from tests.support.builders.messaging_events import enrollment_enrolled, granted, workflow_applied
from tests.support.http_provider import HttpProvider, Reply, http_provider

pytestmark = pytest.mark.integration

ENROLLMENT = uuid.UUID(int=1)


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    async with migrated_schema(test_env, "messaging") as connection:
        yield connection


@pytest.fixture
async def server() -> AsyncIterator[HttpProvider]:
    async with http_provider() as running:
        yield running


async def sms_messaging(conn: asyncpg.Connection, server: HttpProvider) -> Messaging:
    messaging = Messaging(conn, SmtpProvider(host="127.0.0.1", port=1, timeout_s=1))
    twilio = TwilioProvider(
        base_url=server.url,
        account_sid="AC123",
        auth_token="token",
        timeout_s=5,
    )
    messaging.sender = Sender({Channel.SMS: twilio}, clock=lambda: messaging.now, timeout_s=5)
    due: list[Message] = [
        workflow_applied(),
        enrollment_enrolled(ENROLLMENT, phone="+1 415 555 0123"),
        granted(ENROLLMENT, step_index=1, step_id="nudge", channel=Channel.SMS),
    ]
    await messaging.consume(*due)
    return messaging


async def test_a_429_waits_for_its_retry_after_then_the_sms_goes_out_once(
    conn: asyncpg.Connection, server: HttpProvider
) -> None:
    server.script.append(Reply(429, {"code": 20429}, {"Retry-After": "60"}))
    messaging = await sms_messaging(conn, server)

    assert await messaging.send_round() == 1
    assert await messaging.statuses() == ["pending"]
    assert await messaging.send_round(after_s=2) == 0  # the backoff alone would allow it
    assert await messaging.send_round(after_s=60) == 1

    [sent] = [m for m in await messaging.published() if isinstance(m, MessageSent)]
    assert sent.payload.recipient == "+14155550123"
    assert sent.payload.segments == 1
    assert sent.payload.provider_reference is not None
    assert sent.payload.provider_reference.startswith("SM")
    keys = {post.headers["Idempotency-Key"] for post in server.posts}
    assert keys == {sent.payload.provider_message_id}
    assert [post.form["To"] for post in server.posts] == ["+14155550123"] * 2
    assert await messaging.statuses() == ["sent"]


async def test_a_400_fails_the_sms_step_at_once(
    conn: asyncpg.Connection, server: HttpProvider
) -> None:
    server.script.append(Reply(400, {"code": 21602, "message": "Message body is required"}))
    messaging = await sms_messaging(conn, server)

    await messaging.send_round()

    [failed] = [m for m in await messaging.published() if isinstance(m, MessageFailed)]
    assert failed.payload.kind is FailureKind.REJECTED
    assert failed.payload.attempts == 1
    assert "21602" in failed.payload.reason
    assert await messaging.statuses() == ["failed"]
