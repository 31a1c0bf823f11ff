"""Providers that deliver a rendered step: SMTP for email, a logging stand-in otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol

import aiosmtplib

from services.messaging.config import MessagingSettings
from services.messaging.errors import ProviderError
from shared.contracts import utc_now
from shared.contracts.inbound import Channel
from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OutboundEmail:
    """One rendered message for a provider (SMS and chat use it too, without a subject)."""

    message_id: str
    """The Message-ID header, ``<...@...>``, identical on every attempt of one send."""
    sender: str
    recipient: str
    subject: str
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers, e.g. ``X-Offramp-Enrollment-Id`` for upstream correlation."""


class EmailProvider(Protocol):
    """Delivers one message or raises; returning means the provider accepted it."""

    async def send(self, email: OutboundEmail) -> None: ...


def build_email_message(email: OutboundEmail) -> EmailMessage:
    """The MIME message for ``email``, with our Message-ID so replies can be matched."""
    message = EmailMessage()
    message["Message-ID"] = email.message_id
    message["From"] = email.sender
    message["To"] = email.recipient
    message["Subject"] = email.subject
    message["Date"] = format_datetime(utc_now())
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.body)
    return message


class SmtpProvider:
    """Sends through an SMTP relay (a fresh connection per message keeps failures apart)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        use_tls: bool = False,
        start_tls: bool | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._use_tls = use_tls
        self._start_tls = start_tls
        self._username = username
        self._password = password
        self._timeout_s = timeout_s

    async def send(self, email: OutboundEmail) -> None:
        """Hand ``email`` to the relay; raises ``ProviderError`` if it is refused."""
        message = build_email_message(email)
        try:
            await aiosmtplib.send(
                message,
                sender=email.sender,
                recipients=[email.recipient],
                hostname=self._host,
                port=self._port,
                use_tls=self._use_tls,
                start_tls=self._start_tls,
                username=self._username,
                password=self._password,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPException as exc:
            raise ProviderError(
                f"SMTP relay {self._host}:{self._port} refused {email.message_id}: {exc}",
                permanent=_recipient_refused_for_good(exc),
            ) from exc


def _recipient_refused_for_good(exc: aiosmtplib.SMTPException) -> bool:
    # Only a 5xx on RCPT is about this message; a 5xx elsewhere (AUTH, MAIL FROM) is more
    # likely our configuration, which an operator can fix before the retries run out.
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    return isinstance(exc, aiosmtplib.SMTPRecipientRefused) and exc.code >= 500


class LogProvider:
    """Only logs: the stand-in for channels without a real provider yet (SMS, chat)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    async def send(self, email: OutboundEmail) -> None:
        """Log the message as sent."""
        log.info(
            "message_logged_not_sent",
            channel=self._channel.value,
            provider_message_id=email.message_id,
            sender=email.sender,
            recipient=email.recipient,
            subject=email.subject,
            body_chars=len(email.body),
        )


def build_providers(settings: MessagingSettings) -> Mapping[Channel, EmailProvider]:
    """One provider per channel, as the settings choose."""
    email: EmailProvider
    if settings.email_provider == "smtp":
        email = SmtpProvider(
            host=settings.smtp_host,
            port=settings.smtp_port,
            use_tls=settings.smtp_use_tls,
            start_tls=settings.smtp_start_tls,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            timeout_s=settings.send_timeout_s,
        )
    else:
        email = LogProvider(Channel.EMAIL)
    return {
        Channel.EMAIL: email,
        Channel.SMS: LogProvider(Channel.SMS),
        Channel.CHAT: LogProvider(Channel.CHAT),
    }
