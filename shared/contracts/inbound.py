"""Inbound events: what upstream systems publish about records.

One topic per source family (see ``topics``). Upstream producers set ``message_id`` once
per fact and reuse it on every re-send; Offramp acts on each fact once. Types Offramp
does not know are recorded and skipped, so a producer may add types before Offramp
understands them.
"""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)

from shared.contracts.base import (
    Contract,
    EmailAddress,
    Identifier,
    Message,
    RecordRef,
    RecordType,
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


class EmailHeader(Contract):
    """One header line of an email, as received (name case is not significant)."""

    name: str = Field(min_length=1, max_length=200)
    value: str = Field("", max_length=2000)


MAX_REPLY_HEADERS = 200
MAX_BODY_EXCERPT = 20_000


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
        False,
        description="The email platform already knows it is an automatic reply (out of "
        "office): pauses, never exits. Offramp also detects it itself from `headers`, "
        "`subject` and `body_excerpt`.",
    )
    auto_reply_return_date: date | None = Field(
        None,
        description="The return date the platform found in an automatic reply, if any "
        "(preferred over the one Offramp reads in `body_excerpt`).",
    )
    headers: tuple[EmailHeader, ...] = Field(
        (),
        max_length=MAX_REPLY_HEADERS,
        description="The reply's headers as received (name/value pairs, in order): "
        "`Auto-Submitted`, `Precedence`, `X-Autoreply`... tell an automatic reply.",
    )
    body_excerpt: str | None = Field(
        None,
        max_length=MAX_BODY_EXCERPT,
        description="The start of the reply's plain-text body: where an out-of-office "
        "reply says when its sender is back.",
    )


class EmailReplied(EmailEvent):
    """A contact answered an email (possibly from another address or an alias)."""

    type: Literal["email.replied"] = "email.replied"
    payload: EmailRepliedPayload


class EmailLinkClickedPayload(EmailEventPayload):
    url: str = Field(max_length=4096)
    user_agent: str | None = Field(
        None,
        max_length=1000,
        description="The clicking client's User-Agent: security gateways that scan links "
        "name themselves there.",
    )


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


FieldText = Annotated[str, StringConstraints(max_length=10_000)]
FieldScalar = StrictBool | StrictInt | StrictFloat | FieldText
"""One value of a CRM field: text (dates and times as ISO 8601 text), a number or a boolean."""

FieldValue = FieldScalar | tuple[FieldScalar, ...] | None
"""A field's value: a scalar, a list for a multi-select field, or null when it is not set."""

DomainText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=253, pattern=r"^[^\s/@]+$"),
]
"""A company's web domain as the CRM holds it (``www.Acme.com.``, ``bücher.de`` or
``xn--bcher-kva.de``); Offramp normalises case, ``www.``, a trailing dot and punycode
before comparing."""


class RecordUpsertedPayload(Contract):
    """The record as the CRM now holds it: every field Offramp's rules may read.

    A snapshot, not a delta: a field, alias, domain or association absent here is no longer
    set (use ``record.field_changed`` to send one field's change).
    """

    record: RecordRef
    fields: dict[Identifier, FieldValue] = Field(
        default_factory=dict,
        max_length=1000,
        description="Field values by the field's internal name (the internal value of an "
        "option, not its label); multi-select fields are lists.",
    )
    email: EmailAddress | None = Field(None, description="A contact's primary email address.")
    aliases: tuple[EmailAddress, ...] = Field(
        (), max_length=100, description="A contact's other addresses (aliases)."
    )
    company_name: FieldText | None = Field(
        None, description="The company: a contact's company, or an organization's own name."
    )
    domains: tuple[DomainText, ...] = Field(
        (),
        max_length=100,
        description="The company's web domains (a contact's company, an organization's own), "
        "first the primary one.",
    )
    associations: tuple[RecordRef, ...] = Field(
        (),
        max_length=1000,
        description="The records associated with this one (contact, organization, deal).",
    )


class RecordUpserted(Message):
    """A contact, organization or deal was created or changed in the CRM (its full state)."""

    type: Literal["record.upserted"] = "record.upserted"
    payload: RecordUpsertedPayload


class RecordDeletedPayload(Contract):
    record: RecordRef


class RecordDeleted(Message):
    """A record was deleted in the CRM: Offramp forgets its data and its associations."""

    type: Literal["record.deleted"] = "record.deleted"
    payload: RecordDeletedPayload


class AssociationChange(StrEnum):
    ADDED = "added"
    REMOVED = "removed"


class AssociationChangedPayload(Contract):
    record: RecordRef = Field(description="One side of the association (the message's key).")
    associated: RecordRef = Field(description="The other side.")
    change: AssociationChange

    @model_validator(mode="after")
    def _two_records(self) -> Self:
        if self.record == self.associated:
            raise ValueError("a record cannot be associated with itself")
        return self


class AssociationChanged(Message):
    """Two records (contact, organization, deal) were associated or dissociated.

    Associations have no direction: one message changes both sides.
    """

    type: Literal["association.changed"] = "association.changed"
    payload: AssociationChangedPayload


class DealStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class DealStageChangedPayload(Contract):
    record: RecordRef = Field(description="The deal.")
    stage: Identifier = Field(description="The new stage's internal value (not its label).")
    status: DealStatus = Field(description="What the new stage means: open, won or lost.")
    previous_stage: Identifier | None = Field(
        None, description="The stage before, when there was one (none for a new deal)."
    )
    previous_status: DealStatus | None = None
    pipeline: Identifier | None = Field(None, description="The pipeline's internal value.")
    contacts: tuple[RecordRef, ...] = Field(
        (), max_length=1000, description="Contacts associated with the deal, if known."
    )

    @model_validator(mode="after")
    def _a_deal(self) -> Self:
        if self.record.type is not RecordType.DEAL:
            raise ValueError("record must be a deal")
        return self

    @property
    def opened(self) -> bool:
        """The deal is open now and was not before (created, or re-opened)."""
        return self.status is DealStatus.OPEN and self.previous_status is not DealStatus.OPEN

    @property
    def won(self) -> bool:
        return self.status is DealStatus.WON and self.previous_status is not DealStatus.WON

    @property
    def lost(self) -> bool:
        return self.status is DealStatus.LOST and self.previous_status is not DealStatus.LOST


class DealStageChanged(Message):
    """A deal moved to another stage of its pipeline (opened, advanced, won or lost)."""

    type: Literal["deal.stage_changed"] = "deal.stage_changed"
    payload: DealStageChangedPayload


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
    logged_at: AwareDatetime | None = Field(
        None,
        description="When the meeting was logged in the CRM, if not when it occurred "
        "(`occurred_at`): a meeting logged while the contact is enrolled counts even if it "
        "took place earlier.",
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
    offramp_enrollment_id: uuid.UUID | None = Field(
        None,
        description="The marker of Offramp's own messages: the enrollment that sent it, as "
        "the message's metadata carries it. Set: sent by a workflow, never by a person.",
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
    manual: bool = Field(
        True, description="A person assigned the user (false: an automatic routing rule)."
    )


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
    RecordUpserted,
    RecordDeleted,
    AssociationChanged,
    DealStageChanged,
)
CONVERSATION_EVENTS: tuple[type[Message], ...] = (
    ConversationMessageReceived,
    ConversationMessageSent,
    ConversationAgentAssigned,
    MessageDeliveryStatus,
)
