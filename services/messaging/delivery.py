"""Delivery-status callbacks (``message.delivery_status``): what a provider reported about
a message after it accepted it. Pure decisions; the handler is ``delivery_reports``.

Every report is recorded on its send (the latest report wins; an older one arriving late
changes nothing). A report that the message will not arrive (``undelivered`` or
``failed``) about a send that went out is a permanent failure known only after the send:
it is published once as ``message.undelivered`` (``hard_bounce`` when the provider's code
says the number cannot receive messages, else ``rejected``). A report about a message
messaging does not know (another system's, or another account's) is ignored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.messaging.domain import Send, SendKey
from shared.contracts.events import FailureKind
from shared.contracts.inbound import DeliveryStatus

NOT_ARRIVING = frozenset({DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED})

RECIPIENT_UNREACHABLE_CODES = frozenset({"30003", "30005", "30006", "21610", "21211", "21614"})
"""Provider codes (Twilio's numbering, which most SMS APIs copy) that say the number
cannot receive messages: unreachable or unknown handset (30003, 30005), landline or
unreachable carrier (30006), opted out (21610), invalid or non-mobile number (21211,
21614)."""

MessageRef = tuple[str, str]
"""(account id, provider_message_id): one message as a report names it."""


@dataclass(frozen=True, slots=True)
class Report:
    """One delivery-status callback, as the handler read it."""

    account_id: str
    provider_message_id: str
    status: DeliveryStatus
    provider_reference: str | None
    error_code: str | None
    error_message: str | None
    reported_at: datetime
    cause_message_id: uuid.UUID
    correlation_id: uuid.UUID

    @property
    def ref(self) -> MessageRef:
        return (self.account_id, self.provider_message_id)


@dataclass(frozen=True, slots=True)
class ReportedSend:
    """A send a report names, with what it is known to have come to."""

    send: Send
    status: str
    """The send's own status (``sent`` once a provider accepted it)."""
    delivery_status: DeliveryStatus | None = None
    delivery_reported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecorded:
    """The latest report of a send, to be stored on it."""

    key: SendKey
    status: DeliveryStatus
    error: str | None
    reported_at: datetime


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A sent message that will not arrive: ``message.undelivered``."""

    send: Send
    report: Report
    kind: FailureKind

    @property
    def reason(self) -> str:
        return describe(self.report)


def describe(report: Report) -> str:
    """The report in words, for the send's row and the event."""
    words = f"provider reported {report.status.value}"
    if report.error_code:
        words += f" (code {report.error_code})"
    if report.error_message:
        words += f": {report.error_message}"
    return words[:2000]


def kind_of(report: Report) -> FailureKind:
    if report.error_code in RECIPIENT_UNREACHABLE_CODES:
        return FailureKind.HARD_BOUNCE
    return FailureKind.REJECTED


def decide(
    known: ReportedSend | None, report: Report
) -> tuple[ReportedSend | None, DeliveryRecorded | None, Undelivered | None]:
    """What ``report`` does to the send it names: the send as it now stands (for the next
    report of the same run), what to store, and the event to publish (if any)."""
    if known is None:
        return None, None, None
    last = known.delivery_reported_at
    if last is not None and report.reported_at < last:
        return known, None, None  # an older report, arriving late
    was_not_arriving = known.delivery_status in NOT_ARRIVING
    after = ReportedSend(known.send, known.status, report.status, report.reported_at)
    error = describe(report) if report.error_code or report.error_message else None
    recorded = DeliveryRecorded(known.send.key, report.status, error, report.reported_at)
    undelivered = None
    if report.status in NOT_ARRIVING and known.status == "sent" and not was_not_arriving:
        undelivered = Undelivered(known.send, report, kind_of(report))
    return after, recorded, undelivered
