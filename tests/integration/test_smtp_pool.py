"""``SmtpProvider``'s pooled connections against a real SMTP server (aiosmtpd on
localhost): several messages per connection, a bounded number of connections, a refused
recipient leaving the connection usable, reconnecting after the relay went away, and
STARTTLS and AUTH as configured."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.messaging.errors import ProviderError
from services.messaging.providers import OutboundEmail, SmtpProvider
from services.messaging.smtp_pool import PoolLimits
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

REFUSED = "nobody@refused.test"


class Relay:
    """Counts sessions (EHLO) and messages; refuses one recipient."""

    def __init__(self) -> None:
        self.sessions = 0
        self.delivered: list[str] = []

    async def handle_EHLO(  # noqa: N802
        self, _server: Any, session: Any, _envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions += 1
        return responses

    async def handle_RCPT(  # noqa: N802
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.delivered.extend(envelope.rcpt_tos)
        return "250 Message accepted for delivery"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def email_to(recipient: str, n: int = 0) -> OutboundEmail:
    return OutboundEmail(
        message_id=f"<6f1c2b3a-0000-4000-8000-0000000000e1.{n}@mail.acme.test>",
        sender="rep@acme.test",
        recipient=recipient,
        subject="Quick question",
        body="Hi Ada,\n\nDo you have a minute this week?\n",
    )


async def test_many_messages_share_a_few_connections(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    provider = SmtpProvider(host="127.0.0.1", port=port, timeout_s=5, limits=PoolLimits(size=3))
    recipients = [f"r{n}@example.com" for n in range(30)]
    await asyncio.gather(*(provider.send(email_to(r, n)) for n, r in enumerate(recipients)))
    await provider.close()
    assert sorted(handler.delivered) == sorted(recipients)
    assert handler.sessions <= 3
    assert provider.pool.stats.connections_opened == handler.sessions


async def test_a_refused_recipient_leaves_the_connection_usable(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    provider = SmtpProvider(host="127.0.0.1", port=port, timeout_s=5)
    with pytest.raises(ProviderError) as raised:
        await provider.send(email_to(REFUSED))
    assert raised.value.failure is not None
    assert raised.value.failure.value == "hard_bounce"  # classification unchanged
    await provider.send(email_to("ada@example.com", 1))
    await provider.close()
    assert handler.delivered == ["ada@example.com"]
    assert handler.sessions == 1


async def test_a_connection_is_closed_after_its_most_messages(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    provider = SmtpProvider(
        host="127.0.0.1", port=port, timeout_s=5, limits=PoolLimits(max_messages=2)
    )
    for n in range(5):
        await provider.send(email_to(f"r{n}@example.com", n))
    await provider.close()
    assert len(handler.delivered) == 5
    assert handler.sessions == 3


async def test_a_relay_that_went_away_and_came_back_gets_a_fresh_connection() -> None:
    handler, port = Relay(), free_port()
    provider = SmtpProvider(
        host="127.0.0.1", port=port, timeout_s=5, limits=PoolLimits(idle_check_s=0)
    )
    first = Controller(handler, hostname="127.0.0.1", port=port)
    first.start()
    await provider.send(email_to("ada@example.com"))
    first.stop()  # drops the pooled connection
    with pytest.raises(ProviderError) as raised:
        await provider.send(email_to("ada@example.com", 1))
    assert not raised.value.permanent  # relay down: transient
    second = Controller(handler, hostname="127.0.0.1", port=port)
    second.start()
    try:
        await provider.send(email_to("bob@example.com", 2))
    finally:
        await provider.close()
        second.stop()
    assert handler.delivered == ["ada@example.com", "bob@example.com"]
    assert handler.sessions == 2


def _authenticator(
    _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"rep", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_starttls_and_auth_are_used_as_configured(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler, port = Relay(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=_authenticator,
    )
    controller.start()
    try:
        provider = SmtpProvider(
            host="127.0.0.1",
            port=port,
            start_tls=True,
            cert_bundle=str(cert),
            username="rep",
            password="s3cret",
            timeout_s=5,
        )
        for n in range(3):
            await provider.send(email_to(f"r{n}@example.com", n))
        await provider.close()
        greetings = handler.sessions
        wrong = SmtpProvider(
            host="127.0.0.1",
            port=port,
            start_tls=True,
            cert_bundle=str(cert),
            username="rep",
            password="wrong",
            timeout_s=5,
        )
        with pytest.raises(ProviderError) as raised:
            await wrong.send(email_to("x@example.com", 9))
    finally:
        controller.stop()
    assert handler.delivered == [f"r{n}@example.com" for n in range(3)]
    assert greetings == 2  # one connection: EHLO before and after STARTTLS
    assert not raised.value.permanent  # a refused AUTH is our configuration: transient


async def test_implicit_tls_is_used_when_configured(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        provider = SmtpProvider(
            host="127.0.0.1", port=port, use_tls=True, cert_bundle=str(cert), timeout_s=5
        )
        await provider.send(email_to("ada@example.com"))
        await provider.send(email_to("bob@example.com", 1))
        await provider.close()
        untrusted = SmtpProvider(host="127.0.0.1", port=port, use_tls=True, timeout_s=5)
        with pytest.raises(ProviderError) as raised:
            await untrusted.send(email_to("eve@example.com", 2))
    finally:
        controller.stop()
    assert handler.delivered == ["ada@example.com", "bob@example.com"]
    assert handler.sessions == 1
    assert not raised.value.permanent  # an unverifiable certificate is our configuration
