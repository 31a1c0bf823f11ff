"""Inbound events: what upstream systems publish about records.

One topic per source family (see ``topics``). Upstream producers set ``message_id`` once
per fact and reuse it on every re-send; Offramp acts on each fact once. Types Offramp
does not know are recorded and skipped, so a producer may add types before Offramp
understands them.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from shared.contracts.base import (
    Contract,
    EmailAddress,
    Identifier,
    Message,
    RecordRef,
)


class EmailEventPayload(Contract):
    """Common to email events: the contact if upstream knows it, and the addresses."""

    record: RecordRef | None = Field(
        None, description="The contact, when the email platform knows it."
    )
    from_address: EmailAddress = Field(description="Who the email came from.")
    workflow_message_id: str | None = Field(
        None,
        max_length=998,
        description="Message-ID of the Offramp email this event is about (clicks, bounces).",
    )


class EmailEvent(Message):
    def partition_key(self) -> str:
        payload = self.payload
        if isinstance(payload, EmailEventPayload) and payload.record is None:
            return f"{self.account_id}/email/{payload.from_address}"
        return super().partition_key()


class EmailRepliedPayload(EmailEventPayload):
    message_header_id: str = Field(max_length=998, description="The reply's own Message-ID header.")
    in_reply_to: str | None = Field(
        None, max_length=998, description="The reply's In-Reply-To header."
    )
    references: tuple[str, ...] = Field(
        (), max_length=100, description="The reply's References header, oldest first."
    )
    subject: str | None = Field(None, max_length=998)
    auto_reply: bool = Field(
        False, description="An automatic reply (out of office): pauses, never exits."
    )
    auto_reply_return_date: date | None = Field(
        None, description="The return date found in an automatic reply, if any."
    )


class EmailReplied(EmailEvent):
    """A contact answered an email (possibly from another address or an alias)."""

    type: Literal["email.replied"] = "email.replied"
    payload: EmailRepliedPayload


class EmailLinkClickedPayload(EmailEventPayload):
    url: str = Field(max_length=4096)


class EmailLinkClicked(EmailEvent):
    type: Literal["email.link_clicked"] = "email.link_clicked"
    payload: EmailLinkClickedPayload


class BounceKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"


class EmailBouncedPayload(EmailEventPayload):
    bounce: BounceKind
    diagnostic: str | None = Field(None, max_length=2000)


class EmailBounced(EmailEvent):
    type: Literal["email.bounced"] = "email.bounced"
    payload: EmailBouncedPayload


class EmailUnsubscribed(EmailEvent):
    type: Literal["email.unsubscribed"] = "email.unsubscribed"
    payload: EmailEventPayload


class EmailOpened(EmailEvent):
    """Known but never an exit trigger: opens are unreliable (privacy proxies)."""

    type: Literal["email.opened"] = "email.opened"
    payload: EmailEventPayload


class EmailThreadStartedPayload(EmailEventPayload):
    message_header_id: str = Field(max_length=998)
    subject: str | None = Field(None, max_length=998)


class EmailThreadStarted(EmailEvent):
    """The contact wrote a new email outside any workflow thread."""

    type: Literal["email.thread_started"] = "email.thread_started"
    payload: EmailThreadStartedPayload


class PageVisitedPayload(Contract):
    record: RecordRef
    url: str = Field(max_length=4096)
    referrer: str | None = Field(None, max_length=4096)


class PageVisited(Message):
    type: Literal["page.visited"] = "page.visited"
    payload: PageVisitedPayload


class FieldChangedPayload(Contract):
    record: RecordRef
    field: Identifier = Field(description="The field's internal name.")
    old_value: Any = None
    new_value: Any = None


class RecordFieldChanged(Message):
    """A field of a contact, organization or deal was set or updated."""

    type: Literal["record.field_changed"] = "record.field_changed"
    payload: FieldChangedPayload


class DealClosedPayload(Contract):
    record: RecordRef
    contacts: tuple[RecordRef, ...] = ()


class DealWon(Message):
    type: Literal["deal.won"] = "deal.won"
    payload: DealClosedPayload


class DealLost(Message):
    type: Literal["deal.lost"] = "deal.lost"
    payload: DealClosedPayload


class MeetingBookedPayload(Contract):
    record: RecordRef = Field(description="The record the meeting was logged on.")
    attendees: tuple[RecordRef, ...] = Field(
        (), description="Contacts associated with the meeting; only they count."
    )
    organizer_user_id: Identifier | None = None
    via_message_id: str | None = Field(
        None, max_length=998, description="Message-ID of the workflow email whose link booked it."
    )


class MeetingBooked(Message):
    type: Literal["meeting.booked"] = "meeting.booked"
    payload: MeetingBookedPayload


class OwnerAssignedPayload(Contract):
    record: RecordRef
    user_id: Identifier
    manual: bool = True


class RecordOwnerAssigned(Message):
    type: Literal["record.owner_assigned"] = "record.owner_assigned"
    payload: OwnerAssignedPayload


class UserChange(StrEnum):
    DELETED = "deleted"
    DOWNGRADED = "downgraded"


class UserChangedPayload(Contract):
    user_id: Identifier
    change: UserChange


class UserChanged(Message):
    """A user of the account was deleted or lost the seat that owns workflows."""

    type: Literal["user.changed"] = "user.changed"
    payload: UserChangedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/user/{self.payload.user_id}"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    CHAT = "chat"


class ConversationMessagePayload(Contract):
    record: RecordRef
    channel: Channel
    conversation_id: Identifier
    sent_by_user_id: Identifier | None = Field(
        None, description="The person who sent it (outgoing messages only)."
    )


class ConversationMessageReceived(Message):
    type: Literal["conversation.message_received"] = "conversation.message_received"
    payload: ConversationMessagePayload


class ConversationMessageSent(Message):
    """A person (not a workflow) sent a message to the record."""

    type: Literal["conversation.message_sent"] = "conversation.message_sent"
    payload: ConversationMessagePayload


class AgentAssignedPayload(Contract):
    record: RecordRef
    conversation_id: Identifier
    user_id: Identifier


class ConversationAgentAssigned(Message):
    type: Literal["conversation.agent_assigned"] = "conversation.agent_assigned"
    payload: AgentAssignedPayload


class DeliveryStatus(StrEnum):
    """Where a provider says an SMS or chat message is (Twilio's status names)."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    """The carrier or the handset did not take it: it will not arrive."""
    FAILED = "failed"
    """The provider could not send it at all: it will not arrive."""


class DeliveryStatusPayload(Contract):
    channel: Channel
    provider_message_id: str = Field(
        min_length=1,
        max_length=998,
        description="Offramp's id of the message (message.sent's provider_message_id): the "
        "Idempotency-Key of the provider call, and the offramp_message_id query parameter "
        "of the status callback URL Offramp gives the provider.",
    )
    provider_reference: str | None = Field(
        None, max_length=256, description="The provider's own id (e.g. Twilio's MessageSid)."
    )
    status: DeliveryStatus
    error_code: str | None = Field(
        None, max_length=64, description="The provider's error code (e.g. Twilio's 30005)."
    )
    error_message: str | None = Field(None, max_length=1000)


class MessageDeliveryStatus(Message):
    """A provider's delivery-status callback about an SMS or chat message Offramp sent,
    relayed by the gateway that receives the callbacks. Messaging records it; an
    ``undelivered`` or ``failed`` one for a sent message is published as
    ``message.undelivered``."""

    type: Literal["message.delivery_status"] = "message.delivery_status"
    payload: DeliveryStatusPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/message/{self.payload.provider_message_id}"


EMAIL_EVENTS: tuple[type[Message], ...] = (
    EmailReplied,
    EmailLinkClicked,
    EmailBounced,
    EmailUnsubscribed,
    EmailOpened,
    EmailThreadStarted,
)
WEB_EVENTS: tuple[type[Message], ...] = (PageVisited,)
CRM_EVENTS: tuple[type[Message], ...] = (
    RecordFieldChanged,
    DealWon,
    DealLost,
    MeetingBooked,
    RecordOwnerAssigned,
    UserChanged,
)
CONVERSATION_EVENTS: tuple[type[Message], ...] = (
    ConversationMessageReceived,
    ConversationMessageSent,
    ConversationAgentAssigned,
    MessageDeliveryStatus,
)
