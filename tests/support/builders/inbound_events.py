"""Builders of inbound events (replies, clicks...), the input of trigger-evaluator."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from shared.contracts import Message, RecordRef, RecordType
from shared.contracts.inbound import (
    BounceKind,
    EmailBounced,
    EmailBouncedPayload,
    EmailLinkClicked,
    EmailLinkClickedPayload,
    EmailReplied,
    EmailRepliedPayload,
    MeetingBooked,
    MeetingBookedPayload,
)
from tests.support.builders.enrollment_events import ACCOUNT, T0

CONTACT_C1 = RecordRef(type=RecordType.CONTACT, id="c-1")

M = TypeVar("M", bound=Message)


def inbound(
    model: type[M], payload: Any, *, account: str = ACCOUNT, occurred_at: datetime = T0
) -> M:
    return model.create(account_id=account, payload=payload, occurred_at=occurred_at)


def reply(*, account: str = ACCOUNT, **overrides: Any) -> EmailReplied:
    """A reply from someone nobody enrolled, unless ``overrides`` say otherwise."""
    fields: dict[str, Any] = {
        "from_address": "someone@elsewhere.org",
        "message_header_id": "<reply@mail>",
        **overrides,
    }
    return inbound(EmailReplied, EmailRepliedPayload(**fields), account=account)


def click(
    *, account: str = ACCOUNT, occurred_at: datetime = T0 + timedelta(minutes=5), **overrides: Any
) -> EmailLinkClicked:
    """A click, by default five minutes after ``T0`` (when ``message_sent`` emails are sent):
    a person's click, not a link scanner's."""
    fields: dict[str, Any] = {
        "from_address": "someone@elsewhere.org",
        "url": "https://x",
        **overrides,
    }
    return inbound(
        EmailLinkClicked,
        EmailLinkClickedPayload(**fields),
        account=account,
        occurred_at=occurred_at,
    )


def bounce(kind: BounceKind, *, account: str = ACCOUNT, **overrides: Any) -> EmailBounced:
    fields: dict[str, Any] = {"from_address": "someone@elsewhere.org", "bounce": kind, **overrides}
    return inbound(EmailBounced, EmailBouncedPayload(**fields), account=account)


def reply_from_contact(**overrides: Any) -> EmailReplied:
    """Contact c-1 of acme.com answering the workflow email ``sent-1``."""
    fields: dict[str, Any] = {
        "from_address": "c-1@acme.com",
        "message_header_id": "<reply-1@mail.acme.com>",
        "in_reply_to": "<sent-1@offramp>",
        **overrides,
    }
    return inbound(EmailReplied, EmailRepliedPayload(**fields))


def meeting(**overrides: Any) -> MeetingBooked:
    """A meeting booked about contact c-1."""
    fields: dict[str, Any] = {"record": CONTACT_C1, **overrides}
    return inbound(MeetingBooked, MeetingBookedPayload(**fields))
