"""Providers that deliver a rendered step: SMTP for email (pooled connections), HTTP
adapters for SMS and chat (``http_providers``), a logging stand-in for a channel without
one; and how each answer is classified (transient, or permanent as which failure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr
from typing import Protocol, runtime_checkable

import aiosmtplib

from services.messaging.errors import ProviderError
from services.messaging.smtp_pool import PoolLimits, SmtpPool, SmtpRelay
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
    channel: Channel = Channel.EMAIL
    record: str | None = None
    """``<type>:<id>`` of the record it goes to (the webhook providers pass it on)."""
    enrollment_id: str | None = None
    """The enrollment that sends it: the marker of Offramp's own messages, which the
    webhook passes on as ``offramp_enrollment_id`` so that a conversation tool reporting
    the message back (``conversation.message_sent``) never has it taken for a person's."""


class EmailProvider(Protocol):
    """Delivers one message or raises; returning means the provider accepted it, with the
    provider's own id for it when it gives one (an HTTP API's message id; None for SMTP,
    whose id is our Message-ID).

    Raises ``ProviderError`` (with ``failure`` set when the refusal is permanent, and
    ``retry_after_s`` when the provider said when to come back); any other exception is
    taken as transient.
    """

    async def send(self, email: OutboundEmail) -> str | None: ...


Provider = EmailProvider
"""Any channel's provider (the protocol kept its first name)."""


@runtime_checkable
class AcceptanceLookup(Protocol):
    """What a provider that can tell offers (an API with idempotency keys or a look-up by
    Message-ID; SMTP cannot): whether it already accepted a message. A send found
    ``sending`` after a crash is then marked sent without being sent again."""

    async def already_accepted(self, message_id: str) -> bool: ...


_QP_UTF8 = Charset("utf-8")
_QP_UTF8.body_encoding = QP
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})


def build_email_message(email: OutboundEmail) -> Message:
    """The MIME message for ``email``, with our Message-ID so replies can be matched.

    Built with the email package's compat32 classes: about five times cheaper than
    ``EmailMessage.set_content`` with the default policy (whose header registry was most
    of an email's CPU cost), and as correct: ASCII bodies go as 7bit, others as
    quoted-printable UTF-8, non-ASCII header text RFC 2047-encoded (display names only,
    never addresses)."""
    if email.body.isascii():
        message = MIMEText(email.body, "plain", "us-ascii")
    else:
        # MIMEText hands a Charset to set_payload as it is (typeshed says str only).
        message = MIMEText(email.body, "plain", _QP_UTF8)  # type: ignore[arg-type]
    headers = {
        "Message-ID": email.message_id,
        "From": email.sender,
        "To": email.recipient,
        "Subject": email.subject,
        "Date": formatdate(usegmt=True),
        **email.headers,
    }
    for name, value in headers.items():
        message[name] = _header(name, value)
    return message


def _header(name: str, value: str) -> str:
    if value.isascii():
        return value
    if name.lower() in _ADDRESS_HEADERS:
        return formataddr(parseaddr(value), charset="utf-8")
    return Header(value, "utf-8", header_name=name).encode()


class SmtpProvider:
    """Sends through an SMTP relay over a pool of connections (``smtp_pool``)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        use_tls: bool = False,
        start_tls: bool | None = None,
        validate_certs: bool = True,
        cert_bundle: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        limits: PoolLimits | None = None,
    ) -> None:
        self._smtp_relay = SmtpRelay(
            host=host,
            port=port,
            use_tls=use_tls,
            start_tls=start_tls,
            validate_certs=validate_certs,
            cert_bundle=cert_bundle,
            username=username,
            password=password,
        )
        self.pool = SmtpPool(self._smtp_relay, limits=limits or PoolLimits(), timeout_s=timeout_s)

    async def send(self, email: OutboundEmail) -> None:
        """Hand ``email`` to the relay; raises ``ProviderError`` if it is refused."""
        message = build_email_message(email)
        try:
            await self.pool.send(message, sender=email.sender, recipient=email.recipient)
        except aiosmtplib.SMTPException as exc:
            raise ProviderError(
                f"SMTP relay {self._smtp_relay.host}:{self._smtp_relay.port} refused "
                f"{email.message_id}: {exc}",
                failure=smtp_failure(exc),
            ) from exc

    async def close(self) -> None:
        await self.pool.close()


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
    transient: 5xx, 429 and 408 are retried, any other 4xx is a permanent refusal (a
    provider that knows the recipient is unknown says so in its own terms, and its adapter
    makes that a ``hard_bounce``)."""
    if status >= 500 or status in (408, 429):
        return None
    return FailureKind.REJECTED if status >= 400 else None


class LogProvider:
    """Only logs: the stand-in for channels without a real provider yet (SMS, chat)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    async def send(self, email: OutboundEmail) -> None:
        """Log the message as sent (no provider id)."""
        log.info(
            "message_logged_not_sent",
            channel=self._channel.value,
            provider_message_id=email.message_id,
            sender=email.sender,
            recipient=email.recipient,
            subject=email.subject,
            body_chars=len(email.body),
        )
