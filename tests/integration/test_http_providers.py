"""The SMS and chat providers over HTTP against a real local server that records each
request: Twilio's Messages API and a JSON webhook; accepted (with the provider's id), 400,
429 with Retry-After, 500, a time-out, a hard bounce, and the idempotency look-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import quote

import pytest

from services.messaging.errors import ProviderError
from services.messaging.http_providers import (
    LookupWebhookProvider,
    TwilioProvider,
    WebhookProvider,
)
from services.messaging.providers import AcceptanceLookup, OutboundEmail
from shared.contracts.events import FailureKind
from shared.contracts.inbound import Channel
from tests.support.http_provider import HttpProvider, Reply, http_provider

pytestmark = pytest.mark.integration

MESSAGE_ID = "<6f1c2b3a-0000-4000-8000-0000000000e1.1@mail.acme.test>"
SMS = OutboundEmail(
    message_id=MESSAGE_ID,
    sender="+15550100",
    recipient="+14155550123",
    subject="",
    body="Ping: still on for Tuesday?",
    channel=Channel.SMS,
    record="contact:c-1",
)


@pytest.fixture
async def server() -> AsyncIterator[HttpProvider]:
    async with http_provider() as running:
        yield running


def twilio(server: HttpProvider, *, timeout_s: float = 5.0) -> TwilioProvider:
    return TwilioProvider(
        base_url=server.url,
        account_sid="AC123",
        auth_token="token",
        status_callback_url="https://hooks.acme.test/status",
        timeout_s=timeout_s,
    )


async def test_twilio_gets_the_message_as_a_form_and_answers_its_sid(
    server: HttpProvider,
) -> None:
    provider = twilio(server)
    sid = await provider.send(SMS)
    await provider.close()
    [request] = server.posts
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.form == {
        "To": "+14155550123",
        "From": "+15550100",
        "Body": "Ping: still on for Tuesday?",
        "StatusCallback": "https://hooks.acme.test/status?offramp_message_id="
        + quote(MESSAGE_ID, safe=""),
    }
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.headers["Idempotency-Key"] == MESSAGE_ID
    assert sid is not None
    assert sid.startswith("SM")


@pytest.mark.parametrize(
    ("reply", "failure", "retry_after_s"),
    [
        (Reply(400, {"code": 21602, "message": "Message body is required"}), "rejected", None),
        (Reply(400, {"code": 21211, "message": "Invalid 'To' Phone Number"}), "hard_bounce", None),
        (Reply(429, {}, {"Retry-After": "30"}), None, 30.0),
        (Reply(503, {}, {"Retry-After": "7"}), None, 7.0),
        (Reply(500, {}), None, None),
        (Reply(408, {}), None, None),
        (Reply(401, {"code": 20003}), "rejected", None),
    ],
    ids=["400", "400-unknown-number", "429", "503", "500", "408", "401"],
)
async def test_twilio_answers_are_classified_like_smtp_ones(
    server: HttpProvider, reply: Reply, failure: str | None, retry_after_s: float | None
) -> None:
    server.script.append(reply)
    provider = twilio(server)
    with pytest.raises(ProviderError) as raised:
        await provider.send(SMS)
    await provider.close()
    assert raised.value.failure == (FailureKind(failure) if failure else None)
    assert raised.value.retry_after_s == retry_after_s
    assert str(reply.status) in str(raised.value)


async def test_a_provider_that_does_not_answer_in_time_is_transient(server: HttpProvider) -> None:
    server.script.append(Reply(delay_s=2.0))
    provider = twilio(server, timeout_s=0.3)
    with pytest.raises(ProviderError) as raised:
        await provider.send(SMS)
    await provider.close()
    assert not raised.value.permanent
    assert len(server.posts) == 1


async def test_an_unreachable_provider_is_transient() -> None:
    async with http_provider() as gone:
        url = gone.url
    provider = TwilioProvider(base_url=url, account_sid="AC1", auth_token="t", timeout_s=2)
    with pytest.raises(ProviderError) as raised:
        await provider.send(SMS)
    await provider.close()
    assert not raised.value.permanent


async def test_the_webhook_gets_json_with_the_idempotency_key(server: HttpProvider) -> None:
    provider = WebhookProvider(url=f"{server.url}/hook", token="hook-token", timeout_s=5)
    chat = OutboundEmail(
        message_id=MESSAGE_ID,
        sender="team",
        recipient="contact:c-1",
        subject="",
        body="Hi!",
        channel=Channel.CHAT,
        record="contact:c-1",
        enrollment_id="5f0c1a3e-0000-4000-8000-000000000001",
    )
    reference = await provider.send(chat)
    await provider.close()
    [request] = server.posts
    assert request.json == {
        "message_id": MESSAGE_ID,
        "channel": "chat",
        "from": "team",
        "to": "contact:c-1",
        "subject": None,
        "body": "Hi!",
        "record": "contact:c-1",
        "offramp_enrollment_id": "5f0c1a3e-0000-4000-8000-000000000001",
    }
    assert request.headers["Authorization"] == "Bearer hook-token"
    assert request.headers["Idempotency-Key"] == MESSAGE_ID
    assert reference is not None
    assert reference.startswith("hook-")
    assert not isinstance(provider, AcceptanceLookup)


async def test_a_webhook_recipient_unknown_is_a_hard_bounce(server: HttpProvider) -> None:
    server.script.append(Reply(422, {"reason": "recipient_unknown"}))
    provider = WebhookProvider(url=f"{server.url}/hook", timeout_s=5)
    with pytest.raises(ProviderError) as raised:
        await provider.send(SMS)
    await provider.close()
    assert raised.value.failure is FailureKind.HARD_BOUNCE


async def test_a_webhook_with_look_up_tells_whether_it_accepted_a_send(
    server: HttpProvider,
) -> None:
    provider = LookupWebhookProvider(url=f"{server.url}/hook", timeout_s=5)
    assert isinstance(provider, AcceptanceLookup)
    assert not await provider.already_accepted(MESSAGE_ID)
    await provider.send(SMS)
    assert await provider.already_accepted(MESSAGE_ID)
    await provider.close()
    lookups = [r.path for r in server.requests if r.method == "GET"]
    assert len(lookups) == 2
    assert lookups == [f"/hook/{MESSAGE_ID}"] * 2


async def test_a_messaging_service_sender_is_sent_as_messaging_service_sid(
    server: HttpProvider,
) -> None:
    provider = twilio(server)
    await provider.send(replace(SMS, sender="MG0123456789abcdef"))
    await provider.close()
    [request] = server.posts
    assert request.form["MessagingServiceSid"] == "MG0123456789abcdef"
    assert "From" not in request.form
