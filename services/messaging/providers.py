"""Providers that deliver a rendered step: SMTP for email, a logging stand-in otherwise."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol, runtime_checkable

import aiosmtplib

from services.messaging.config import MessagingSettings
from services.messaging.errors import ProviderError
from shared.contracts import utc_now
from shared.contracts.events import FailureKind
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
    """Delivers one message or raises; returning means the provider accepted it.

    Raises ``ProviderError`` (with ``failure`` set when the refusal is permanent); any other
    exception is taken as transient.
    """

    async def send(self, email: OutboundEmail) -> None: ...


@runtime_checkable
class AcceptanceLookup(Protocol):
    """What a provider that can tell offers (an API with idempotency keys or a look-up by
    Message-ID; SMTP cannot): whether it already accepted a message. A send found
    ``sending`` after a crash is then marked sent without being sent again."""

    async def already_accepted(self, message_id: str) -> bool: ...


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
                failure=smtp_failure(exc),
            ) from exc


_ENHANCED_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_MAILBOX_UNKNOWN_CODES = frozenset({550, 551, 553})


def smtp_failure(exc: aiosmtplib.SMTPException) -> FailureKind | None:
    """How an SMTP error refuses the message for good, or None when it is transient.

    Only a 5xx about this message is permanent: on RCPT (a hard bounce when the mailbox
    does not exist: enhanced status 5.1.x, or a bare 550/551/553; else ``rejected``) or on
    DATA (the content is refused). A 5xx elsewhere (AUTH, MAIL FROM) is more likely our
    configuration, which an operator can fix within the retry budget; 4xx replies,
    refused or dropped connections and time-outs are transient.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [(r.code, r.message) for r in exc.recipients]
    elif isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        replies = [(exc.code, exc.message)]
    elif isinstance(exc, aiosmtplib.SMTPDataError):
        return FailureKind.REJECTED if exc.code >= 500 else None
    else:
        return None
    if not replies or any(code < 500 for code, _ in replies):
        return None
    if all(_mailbox_unknown(code, message) for code, message in replies):
        return FailureKind.HARD_BOUNCE
    return FailureKind.REJECTED


def _mailbox_unknown(code: int, message: str) -> bool:
    enhanced = _ENHANCED_STATUS.match(message)
    if enhanced is not None:
        return enhanced.group(1) == "5" and enhanced.group(2) == "1"
    return code in _MAILBOX_UNKNOWN_CODES


def http_failure(status: int) -> FailureKind | None:
    """How an HTTP provider's answer refuses a message for good, or None when it is
    transient (for the HTTP providers to come): 5xx, 429 and 408 are retried, any other
    4xx is a permanent refusal (a provider that knows the recipient is unknown says so in
    its own terms and raises ``hard_bounce`` itself)."""
    if status >= 500 or status in (408, 429):
        return None
    return FailureKind.REJECTED if status >= 400 else None


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
