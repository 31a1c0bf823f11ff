"""The trigger table: what each inbound event means for enrollments, and where to look.

Pure, like ``domain``: ``classify`` reads an inbound event and says which exit trigger it
is (and the exit reason it gives), whether this occurrence may exit at all, and which
enrollments it may concern (a sent message it quotes, the records it names, the address
it came from).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.trigger_evaluator import out_of_office
from services.trigger_evaluator.out_of_office import AutoReply
from shared.contracts import TOPIC_OF_TYPE, Message, RecordRef, RecordType
from shared.contracts.commands import ExitReason
from shared.contracts.events import EnrollmentEnrolled, EnrollmentExited
from shared.contracts.inbound import (
    BounceKind,
    Channel,
    ConversationAgentAssigned,
    ConversationMessageReceived,
    ConversationMessageSent,
    DealLost,
    DealStageChanged,
    DealStageChangedPayload,
    DealWon,
    EmailBounced,
    EmailLinkClicked,
    EmailOpened,
    EmailReplied,
    EmailThreadStarted,
    EmailUnsubscribed,
    FieldValue,
    MeetingBooked,
    PageVisited,
    RecordFieldChanged,
    RecordOwnerAssigned,
    RecordUpserted,
    UserChanged,
)
from shared.contracts.workflow import ExitTrigger


@dataclass(frozen=True, slots=True)
class TriggerRule:
    """The workflow trigger an event type fires and the exit reason it gives."""

    trigger: ExitTrigger
    reason: ExitReason


EXIT_RULES: dict[str, TriggerRule | None] = {
    EmailReplied.TYPE: TriggerRule(ExitTrigger.REPLIED, ExitReason.REPLIED),
    EmailLinkClicked.TYPE: TriggerRule(ExitTrigger.LINK_CLICKED, ExitReason.LINK_CLICKED),
    EmailBounced.TYPE: TriggerRule(ExitTrigger.HARD_BOUNCED, ExitReason.HARD_BOUNCED),
    EmailUnsubscribed.TYPE: TriggerRule(ExitTrigger.UNSUBSCRIBED, ExitReason.UNSUBSCRIBED),
    EmailThreadStarted.TYPE: TriggerRule(ExitTrigger.NEW_CONVERSATION, ExitReason.NEW_CONVERSATION),
    EmailOpened.TYPE: None,  # opens are unreliable (privacy proxies open every email)
    PageVisited.TYPE: TriggerRule(ExitTrigger.PAGE_VISITED, ExitReason.PAGE_VISITED),
    RecordFieldChanged.TYPE: TriggerRule(ExitTrigger.FIELD_CHANGED, ExitReason.FIELD_CHANGED),
    DealWon.TYPE: TriggerRule(ExitTrigger.DEAL_WON, ExitReason.DEAL_WON),
    DealLost.TYPE: TriggerRule(ExitTrigger.DEAL_LOST, ExitReason.DEAL_LOST),
    # Its triggers depend on the stage (``deal_stage_rules``): this is the usual one.
    DealStageChanged.TYPE: TriggerRule(
        ExitTrigger.DEAL_STAGE_ENTERED, ExitReason.DEAL_STAGE_ENTERED
    ),
    MeetingBooked.TYPE: TriggerRule(ExitTrigger.MEETING_BOOKED, ExitReason.MEETING_BOOKED),
    RecordOwnerAssigned.TYPE: TriggerRule(ExitTrigger.USER_ASSIGNED, ExitReason.USER_ASSIGNED),
    UserChanged.TYPE: None,  # owner deleted or downgraded: a later issue
    ConversationMessageReceived.TYPE: TriggerRule(
        ExitTrigger.MESSAGE_RECEIVED, ExitReason.MESSAGE_RECEIVED
    ),
    ConversationMessageSent.TYPE: TriggerRule(
        ExitTrigger.MESSAGE_SENT_BY_PERSON, ExitReason.MESSAGE_SENT_BY_PERSON
    ),
    ConversationAgentAssigned.TYPE: TriggerRule(
        ExitTrigger.USER_ASSIGNED, ExitReason.USER_ASSIGNED
    ),
}
"""Every inbound event type -> the trigger it fires and the reason of its exits (None: never).

A colleague's reply exits with ``COMPANY_REPLIED`` instead of ``REPLIED`` (see ``domain``).
"""


BY_OTHER_WORKFLOW = TriggerRule(
    ExitTrigger.UNENROLLED_BY_OTHER_WORKFLOW, ExitReason.UNENROLLED_BY_OTHER_WORKFLOW
)
BY_OTHER_WORKFLOW_RULES: dict[str, TriggerRule] = {
    EnrollmentEnrolled.TYPE: BY_OTHER_WORKFLOW,
    EnrollmentExited.TYPE: BY_OTHER_WORKFLOW,
}
"""Enrollment events that may exit a record's other workflows (``exits_workflows_on_*``):
not inbound events, classified like them by the projection's subscriber."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where the enrollments an event may concern are found (all within its account)."""

    sent_message_ids: tuple[str, ...] = ()
    """Message-IDs of Offramp emails the event quotes: their enrollments (a THREAD match)."""
    records: tuple[RecordRef, ...] = ()
    """Records the event names: their enrollments."""
    attendees: tuple[RecordRef, ...] = ()
    """Contacts attending a booked meeting: their enrollments."""
    addresses: tuple[str, ...] = ()
    """Addresses the event came from: enrollments with that email (or alias)."""
    include_aliases: bool = True
    company_of_replier: bool = False
    """Also the live enrollments of the company's contacts: the replier's (unenroll the
    whole company) or the deal's (a deal opened at the company)."""
    company_anchors: tuple[RecordRef, ...] = ()
    """Records whose CRM organization is the company (besides the contacts found)."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What a workflow's rules for the trigger read of the event (``rules``)."""

    url: str | None = None
    """Page visited: the URL."""
    changes: tuple[tuple[str, FieldValue], ...] = ()
    """Field set or updated: each changed field and its new value (null: cleared)."""
    channel: Channel | None = None
    """Conversation messages: the channel."""
    user_agent: str | None = None
    """Link clicked: the client that clicked."""
    deal_stage: str | None = None
    """Deal stage changed: the stage entered."""
    source_enrollment_id: uuid.UUID | None = None
    """Unenrolled by another workflow: the enrollment that entered (or left) it."""


NO_FACTS = Facts()


@dataclass(frozen=True, slots=True)
class Signal:
    """What one inbound event means for enrollments: ``classify``'s answer.

    It keeps what every decision about the event needs to say where it came from: the
    event's id, type, topic, time and flow (its correlation id).
    """

    message_id: uuid.UUID
    account_id: str
    event_type: str
    topic: str
    occurred_at: datetime
    correlation_id: uuid.UUID
    """The flow the event belongs to: its own correlation id, or its id if it starts one."""
    rule: TriggerRule | None
    lookup: Lookup = Lookup()
    also: tuple[TriggerRule, ...] = ()
    """Further triggers the same event fires (a deal that opened into a chosen stage)."""
    ignored_because: str | None = None
    """Set when this event can never exit anything (an automatic reply, a soft bounce...)."""
    record: RecordRef | None = None
    organizer_user_id: str | None = None
    auto_reply: AutoReply | None = None
    """Set for an automatic reply: it never exits, it pauses its sender's enrollments."""
    facts: Facts = NO_FACTS
    counted_at: datetime | None = None
    """When the event counts as having happened for "did it happen while enrolled" (a
    meeting's logging time); None: ``occurred_at``."""

    @property
    def happened_at(self) -> datetime:
        return self.counted_at or self.occurred_at

    @property
    def rules(self) -> tuple[TriggerRule, ...]:
        """Every trigger the event fires, the main one first."""
        return (self.rule, *self.also) if self.rule is not None else ()

    @property
    def may_exit(self) -> bool:
        return self.rule is not None and self.ignored_because is None

    @property
    def may_pause(self) -> bool:
        return self.auto_reply is not None

    @property
    def looks_for_enrollments(self) -> bool:
        """Whether its candidate enrollments are loaded: it may exit or pause some."""
        return self.may_exit or self.may_pause


def normalize_message_id(value: str | None) -> str | None:
    """An email Message-ID without the angle brackets and spaces some headers keep."""
    if value is None:
        return None
    cleaned = value.strip().removeprefix("<").removesuffix(">").strip()
    return cleaned or None


def _message_ids(*values: str | None) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for value in values:
        normalized = normalize_message_id(value)
        if normalized is not None:
            found[normalized] = None
    return tuple(found)


def _records(*records: RecordRef | None) -> tuple[RecordRef, ...]:
    return tuple(dict.fromkeys(r for r in records if r is not None))


def classify(event: Message) -> Signal:  # noqa: PLR0912, PLR0915 - one case per inbound type
    """Say which trigger ``event`` fires, whether it may exit, and where its enrollments are.

    The lookup is filled in even when this occurrence may not exit (an automatic reply
    still says whose it is). Raises ``KeyError`` for a type that is not an inbound
    event (a wiring mistake).
    """
    rule = (
        EXIT_RULES[event.type] if event.type in EXIT_RULES else BY_OTHER_WORKFLOW_RULES[event.type]
    )
    record = getattr(event.payload, "record", None)
    lookup = Lookup()
    why_not: str | None = None
    organizer_user_id: str | None = None
    auto_reply: AutoReply | None = None
    facts = NO_FACTS
    counted_at: datetime | None = None
    also: tuple[TriggerRule, ...] = ()
    match event:
        case EmailReplied(payload=reply):
            # PRODUCT: an automatic (out-of-office) reply never exits: it pauses.
            auto_reply = out_of_office.detect(reply, event.occurred_at)
            why_not = auto_reply.explain() if auto_reply else None
            # Quoted workflow emails, the named contact, and the sender's address: a reply
            # from an alias or another known address of the enrolled contact counts too.
            lookup = Lookup(
                sent_message_ids=_message_ids(
                    reply.in_reply_to, *reply.references, reply.workflow_message_id
                ),
                records=_records(reply.record),
                addresses=(reply.from_address,),
                company_of_replier=True,
            )
        case EmailLinkClicked(payload=click):
            why_not = None if click.workflow_message_id else "link clicked outside a workflow email"
            # PRODUCT: only links in this workflow's emails: the clicked email's own
            # enrollment (a THREAD match), never the contact's other workflows. Before its
            # message.sent is projected the click waits for it (parking).
            lookup = Lookup(sent_message_ids=_message_ids(click.workflow_message_id))
            facts = Facts(user_agent=click.user_agent)
        case EmailBounced(payload=bounce):
            if bounce.bounce is not BounceKind.HARD:
                why_not = f"{bounce.bounce.value} bounce: the address may still work"
            # Only the address Offramp sends to: a dead alias does not stop outreach.
            lookup = Lookup(
                sent_message_ids=_message_ids(bounce.workflow_message_id),
                records=_records(bounce.record),
                addresses=(bounce.from_address,),
                include_aliases=False,
            )
        case EmailUnsubscribed(payload=email) | EmailThreadStarted(payload=email):
            lookup = Lookup(
                sent_message_ids=_message_ids(email.workflow_message_id),
                records=_records(email.record),
                addresses=(email.from_address,),
            )
        case EmailOpened():
            why_not = "opens never exit: privacy proxies open emails too"
        case MeetingBooked(payload=meeting):
            # Only contacts associated with the meeting count; the record it was logged on
            # counts only if it is a contact itself.
            attendees = (*meeting.attendees, meeting.record)
            lookup = Lookup(
                sent_message_ids=_message_ids(meeting.via_message_id),
                attendees=_records(*(a for a in attendees if a.type is RecordType.CONTACT)),
            )
            organizer_user_id = meeting.organizer_user_id
            counted_at = meeting.logged_at
        case RecordOwnerAssigned(payload=assigned):
            why_not = None if assigned.manual else "owner assigned automatically, not by a person"
            lookup = Lookup(records=(assigned.record,))
        case ConversationMessageSent(payload=sent):
            if sent.offramp_enrollment_id is not None:
                why_not = "message sent by an Offramp workflow (it carries the marker)"
            elif sent.sent_by_user_id is None:
                why_not = "message sent by automation, not a person"
            lookup = Lookup(records=(sent.record,))
            facts = Facts(channel=sent.channel)
        case ConversationMessageReceived(payload=received):
            # Someone from the same company wrote on any channel: the company may go too.
            lookup = Lookup(records=(received.record,), company_of_replier=True)
            facts = Facts(channel=received.channel)
        case ConversationAgentAssigned(payload=assigned_agent):
            if not assigned_agent.manual:
                why_not = "user assigned automatically (a routing rule), not by a person"
            lookup = Lookup(records=(assigned_agent.record,))
        case EnrollmentEnrolled(payload=entered) | EnrollmentExited(payload=entered):
            # Another workflow may name this record's other workflows to exit (its
            # settings say so): the record's enrollments, the entering one among them.
            lookup = Lookup(records=(entered.record,))
            facts = Facts(source_enrollment_id=entered.enrollment_id)
        case UserChanged():
            why_not = "owner removal (user deleted or downgraded) is not handled yet"
        case PageVisited(payload=visit):
            lookup = Lookup(records=(visit.record,))
            facts = Facts(url=visit.url)
        case RecordFieldChanged(payload=change):
            lookup = Lookup(records=(change.record,))
            facts = Facts(changes=((change.field, change.new_value),))
        case DealWon(payload=about) | DealLost(payload=about):
            lookup = Lookup(records=(about.record,))
        case DealStageChanged(payload=stage):
            fired = deal_stage_rules(stage)
            rule, also = (fired[0], fired[1:]) if fired else (rule, ())
            if not fired:
                why_not = f"the deal stayed in stage {stage.stage}"
            # PRODUCT: a deal opening at a company may exit every enrollment of its
            # contacts (a contact workflow's setting): the company is the deal's own.
            lookup = Lookup(
                records=(stage.record,),
                company_of_replier=stage.opened,
                company_anchors=(stage.record, *stage.contacts) if stage.opened else (),
            )
            facts = Facts(deal_stage=stage.stage)
    return Signal(
        message_id=event.message_id,
        account_id=event.account_id,
        event_type=event.type,
        topic=TOPIC_OF_TYPE[event.type],
        occurred_at=event.occurred_at,
        correlation_id=event.correlation_id or event.message_id,
        rule=rule,
        lookup=lookup,
        ignored_because=why_not,
        record=record if isinstance(record, RecordRef) else None,
        organizer_user_id=organizer_user_id,
        auto_reply=auto_reply,
        facts=facts,
        counted_at=counted_at,
        also=also,
    )


def deal_stage_rules(stage: DealStageChangedPayload) -> tuple[TriggerRule, ...]:
    """The triggers a deal's stage change fires: won, lost or opened, and a stage entered."""
    fired: list[TriggerRule] = []
    if stage.won:
        fired.append(TriggerRule(ExitTrigger.DEAL_WON, ExitReason.DEAL_WON))
    elif stage.lost:
        fired.append(TriggerRule(ExitTrigger.DEAL_LOST, ExitReason.DEAL_LOST))
    elif stage.opened:
        fired.append(TriggerRule(ExitTrigger.DEAL_OPENED, ExitReason.DEAL_OPENED))
    if stage.stage != stage.previous_stage:
        fired.append(TriggerRule(ExitTrigger.DEAL_STAGE_ENTERED, ExitReason.DEAL_STAGE_ENTERED))
    return tuple(fired)


def field_changes_signal(
    event: RecordUpserted, changes: tuple[tuple[str, FieldValue], ...]
) -> Signal:
    """What a CRM snapshot that changed ``changes`` means: a field set or updated on its
    record (the changes come from the projection, not from the event alone)."""
    record = event.payload.record
    return Signal(
        message_id=event.message_id,
        account_id=event.account_id,
        event_type=event.type,
        topic=TOPIC_OF_TYPE[event.type],
        occurred_at=event.occurred_at,
        correlation_id=event.correlation_id or event.message_id,
        rule=EXIT_RULES[RecordFieldChanged.TYPE],
        lookup=Lookup(records=(record,)),
        record=record,
        facts=Facts(changes=changes),
    )
