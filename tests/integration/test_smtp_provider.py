"""``SmtpProvider`` against a real SMTP server (aiosmtpd on localhost): the envelope, the
Message-ID header replies will quote, and a refused recipient."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services.messaging.errors import ProviderError
from services.messaging.providers import OutboundEmail, SmtpProvider

pytestmark = pytest.mark.integration


class Collector:
    """An aiosmtpd handler that keeps every envelope and refuses one recipient."""

    REFUSED = "nobody@refused.test"

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if address == self.REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    port = _free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


def email_to(recipient: str) -> OutboundEmail:
    return OutboundEmail(
        message_id="<6f1c2b3a-0000-4000-8000-0000000000e1.0@mail.acme.test>",
        sender="rep@acme.test",
        recipient=recipient,
        subject="Quick question",
        body="Hi Ada,\n\nDo you have a minute this week?\n",
        headers={"X-Offramp-Step": "intro"},
    )


async def test_the_relay_receives_our_message_id_and_recipient(
    smtp_server: tuple[Collector, int],
) -> None:
    collector, port = smtp_server
    provider = SmtpProvider(host="127.0.0.1", port=port, timeout_s=5)
    await provider.send(email_to("ada@example.com"))
    [envelope] = collector.envelopes
    assert envelope.mail_from == "rep@acme.test"
    assert envelope.rcpt_tos == ["ada@example.com"]
    received: Message = message_from_bytes(envelope.original_content, policy=default)
    assert received["Message-ID"] == "<6f1c2b3a-0000-4000-8000-0000000000e1.0@mail.acme.test>"
    assert (received["From"], received["To"]) == ("rep@acme.test", "ada@example.com")
    assert received["Subject"] == "Quick question"
    assert received["X-Offramp-Step"] == "intro"
    assert received["Date"] is not None
    assert "Do you have a minute" in received.get_payload()


async def test_a_refused_recipient_is_a_provider_error(smtp_server: tuple[Collector, int]) -> None:
    collector, port = smtp_server
    provider = SmtpProvider(host="127.0.0.1", port=port, timeout_s=5)
    with pytest.raises(ProviderError, match="refused") as raised:
        await provider.send(email_to(Collector.REFUSED))
    assert raised.value.permanent  # a 5xx on RCPT: retrying cannot help
    assert collector.envelopes == []


async def test_an_unreachable_relay_raises() -> None:
    provider = SmtpProvider(host="127.0.0.1", port=_free_port(), timeout_s=2)
    with pytest.raises(ProviderError) as raised:
        await provider.send(email_to("ada@example.com"))
    assert not raised.value.permanent  # the relay may come back: retried
