"""trigger-evaluator's pure decisions: which inbound events exit which enrollments, and why."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.trigger_evaluator.domain import (
    PERSONAL_EMAIL_DOMAINS,
    Candidate,
    CrossAccountError,
    EnrollmentStatus,
    EnrollmentView,
    MatchKind,
    Outcome,
    WorkflowTriggers,
    WorkflowVersionUnknownError,
    company_domain_key,
    decide,
    exit_command,
    exit_message_id,
    replier_company_domains,
)
from services.trigger_evaluator.projection import (
    ContactKeys,
    EnrollmentChange,
    EnrollmentEvent,
    fold_enrollment_events,
)
from services.trigger_evaluator.triggers import EXIT_RULES, classify, normalize_message_id
from shared.contracts import (
    MESSAGES_BY_TOPIC,
    SYSTEM_ACTOR,
    Actor,
    ActorKind,
    Message,
    RecordRef,
    RecordType,
    topics,
)
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource
from shared.contracts.events import (
    CompletedPayload,
    EnrolledPayload,
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    ExitedPayload,
    PausedPayload,
    ResumedPayload,
)
from shared.contracts.inbound import (
    AgentAssignedPayload,
    BounceKind,
    Channel,
    ConversationAgentAssigned,
    ConversationMessagePayload,
    ConversationMessageReceived,
    ConversationMessageSent,
    DealClosedPayload,
    DealLost,
    DealWon,
    EmailBounced,
    EmailBouncedPayload,
    EmailEventPayload,
    EmailLinkClicked,
    EmailLinkClickedPayload,
    EmailOpened,
    EmailReplied,
    EmailRepliedPayload,
    EmailThreadStarted,
    EmailThreadStartedPayload,
    EmailUnsubscribed,
    FieldChangedPayload,
    MeetingBooked,
    MeetingBookedPayload,
    OwnerAssignedPayload,
    PageVisited,
    PageVisitedPayload,
    RecordFieldChanged,
    RecordOwnerAssigned,
    UserChange,
    UserChanged,
    UserChangedPayload,
)
from shared.contracts.workflow import ExitTrigger

pytestmark = pytest.mark.unit

ACCOUNT = "acme-account"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")
COLLEAGUE = RecordRef(type=RecordType.CONTACT, id="c-2")
DEAL = RecordRef(type=RecordType.DEAL, id="d-1")
ORGANIZATION = RecordRef(type=RecordType.ORGANIZATION, id="o-1")
ALL_CONTACT_TRIGGERS = frozenset(ExitTrigger) - {ExitTrigger.DEAL_WON, ExitTrigger.DEAL_LOST}


def enrollment(
    record: RecordRef = CONTACT,
    *,
    triggers: frozenset[ExitTrigger] = ALL_CONTACT_TRIGGERS,
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE,
    company_domain: str | None = "acme.com",
    unenroll_company_on_reply: bool = False,
    workflow_known: bool = True,
    enrolled_by_user_id: str | None = None,
    account_id: str = ACCOUNT,
) -> EnrollmentView:
    return EnrollmentView(
        enrollment_id=uuid.uuid4(),
        account_id=account_id,
        workflow_id="onboarding",
        workflow_version=3,
        record=record,
        status=status,
        workflow=WorkflowTriggers(triggers, unenroll_company_on_reply) if workflow_known else None,
        email=f"{record.id}@acme.com",
        company_domain=company_domain,
        enrolled_by_user_id=enrolled_by_user_id,
    )


def inbound(model: type[Message], payload: Any) -> Message:
    return model.create(account_id=ACCOUNT, payload=payload, occurred_at=AT)


def replied(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "from_address": "c-1@acme.com",
        "message_header_id": "<reply-1@mail.acme.com>",
        "in_reply_to": "<sent-1@offramp>",
        **overrides,
    }
    return inbound(EmailReplied, EmailRepliedPayload(**fields))


def meeting(**overrides: Any) -> Message:
    return inbound(MeetingBooked, MeetingBookedPayload(**{"record": CONTACT, **overrides}))


def one(decisions: list[Any]) -> Any:
    assert len(decisions) == 1, decisions
    return decisions[0]


# Every trigger, with an event that fires it and the candidate the lookup would find.
FIRING_EVENTS = [
    pytest.param(replied(), ExitTrigger.REPLIED, ExitReason.REPLIED, CONTACT, id="replied"),
    pytest.param(
        inbound(
            EmailLinkClicked,
            EmailLinkClickedPayload(
                from_address="c-1@acme.com", workflow_message_id="<sent-1@offramp>", url="https://x"
            ),
        ),
        ExitTrigger.LINK_CLICKED,
        ExitReason.LINK_CLICKED,
        CONTACT,
        id="link_clicked",
    ),
    pytest.param(
        inbound(
            EmailBounced,
            EmailBouncedPayload(
                from_address="c-1@acme.com", record=CONTACT, bounce=BounceKind.HARD
            ),
        ),
        ExitTrigger.HARD_BOUNCED,
        ExitReason.HARD_BOUNCED,
        CONTACT,
        id="hard_bounce",
    ),
    pytest.param(
        inbound(EmailUnsubscribed, EmailEventPayload(from_address="c-1@acme.com")),
        ExitTrigger.UNSUBSCRIBED,
        ExitReason.UNSUBSCRIBED,
        CONTACT,
        id="unsubscribed",
    ),
    pytest.param(
        inbound(
            EmailThreadStarted,
            EmailThreadStartedPayload(from_address="c-1@acme.com", message_header_id="<n@x>"),
        ),
        ExitTrigger.NEW_CONVERSATION,
        ExitReason.NEW_CONVERSATION,
        CONTACT,
        id="new_conversation",
    ),
    pytest.param(
        inbound(PageVisited, PageVisitedPayload(record=CONTACT, url="https://acme.com/pricing")),
        ExitTrigger.PAGE_VISITED,
        ExitReason.PAGE_VISITED,
        CONTACT,
        id="page_visited",
    ),
    pytest.param(
        inbound(RecordFieldChanged, FieldChangedPayload(record=ORGANIZATION, field="stage")),
        ExitTrigger.FIELD_CHANGED,
        ExitReason.FIELD_CHANGED,
        ORGANIZATION,
        id="field_changed",
    ),
    pytest.param(
        inbound(DealWon, DealClosedPayload(record=DEAL)),
        ExitTrigger.DEAL_WON,
        ExitReason.DEAL_WON,
        DEAL,
        id="deal_won",
    ),
    pytest.param(
        inbound(DealLost, DealClosedPayload(record=DEAL)),
        ExitTrigger.DEAL_LOST,
        ExitReason.DEAL_LOST,
        DEAL,
        id="deal_lost",
    ),
    pytest.param(
        meeting(), ExitTrigger.MEETING_BOOKED, ExitReason.MEETING_BOOKED, CONTACT, id="meeting"
    ),
    pytest.param(
        inbound(RecordOwnerAssigned, OwnerAssignedPayload(record=CONTACT, user_id="u-7")),
        ExitTrigger.USER_ASSIGNED,
        ExitReason.USER_ASSIGNED,
        CONTACT,
        id="owner_assigned",
    ),
    pytest.param(
        inbound(
            ConversationMessageReceived,
            ConversationMessagePayload(record=CONTACT, channel=Channel.SMS, conversation_id="k1"),
        ),
        ExitTrigger.MESSAGE_RECEIVED,
        ExitReason.MESSAGE_RECEIVED,
        CONTACT,
        id="message_received",
    ),
    pytest.param(
        inbound(
            ConversationMessageSent,
            ConversationMessagePayload(
                record=CONTACT, channel=Channel.CHAT, conversation_id="k1", sent_by_user_id="u-7"
            ),
        ),
        ExitTrigger.MESSAGE_SENT_BY_PERSON,
        ExitReason.MESSAGE_SENT_BY_PERSON,
        CONTACT,
        id="message_sent_by_person",
    ),
    pytest.param(
        inbound(
            ConversationAgentAssigned,
            AgentAssignedPayload(record=CONTACT, conversation_id="k1", user_id="u-7"),
        ),
        ExitTrigger.USER_ASSIGNED,
        ExitReason.USER_ASSIGNED,
        CONTACT,
        id="agent_assigned",
    ),
]


def test_every_inbound_event_type_has_a_row_in_the_trigger_table() -> None:
    inbound_topics = (
        topics.INBOUND_EMAIL,
        topics.INBOUND_WEB,
        topics.INBOUND_CRM,
        topics.INBOUND_CONVERSATION,
    )
    inbound_types = {model.TYPE for t in inbound_topics for model in MESSAGES_BY_TOPIC[t]}
    assert set(EXIT_RULES) == inbound_types


def test_trigger_reasons_are_the_reasons_named_after_the_trigger() -> None:
    for rule in EXIT_RULES.values():
        if rule is not None:
            assert rule.reason.value == rule.trigger.value


@pytest.mark.parametrize(("event", "trigger", "reason", "record"), FIRING_EVENTS)
def test_each_trigger_exits_a_live_enrollment_whose_workflow_turned_it_on(
    event: Message, trigger: ExitTrigger, reason: ExitReason, record: RecordRef
) -> None:
    signal = classify(event)
    assert signal.may_exit
    assert signal.rule is not None
    assert signal.rule.trigger is trigger
    view = enrollment(record, triggers=frozenset({trigger}))

    decision = one(decide(signal, [Candidate(view, MatchKind.RECORD)]))

    assert decision.outcome is Outcome.EXIT
    assert decision.reason is reason
    assert decision.enrollment == view


@pytest.mark.parametrize(("event", "trigger", "reason", "record"), FIRING_EVENTS)
def test_a_trigger_the_workflow_did_not_turn_on_never_exits(
    event: Message, trigger: ExitTrigger, reason: ExitReason, record: RecordRef
) -> None:
    view = enrollment(record, triggers=frozenset(ExitTrigger) - {trigger})

    decision = one(decide(classify(event), [Candidate(view, MatchKind.RECORD)]))

    assert decision.outcome is Outcome.IGNORED
    assert decision.reason is None
    assert f"trigger {trigger.value} is off in workflow onboarding v3" in decision.why


@pytest.mark.parametrize(
    ("event", "why"),
    [
        pytest.param(replied(auto_reply=True), "automatic reply", id="auto_reply"),
        pytest.param(
            inbound(
                EmailBounced,
                EmailBouncedPayload(from_address="c-1@acme.com", bounce=BounceKind.SOFT),
            ),
            "soft bounce",
            id="soft_bounce",
        ),
        pytest.param(
            inbound(EmailOpened, EmailEventPayload(from_address="c-1@acme.com", record=CONTACT)),
            "opens never exit",
            id="opened",
        ),
        pytest.param(
            inbound(
                EmailLinkClicked,
                EmailLinkClickedPayload(from_address="c-1@acme.com", url="https://x"),
            ),
            "outside a workflow email",
            id="click_outside_workflow_email",
        ),
        pytest.param(
            inbound(
                RecordOwnerAssigned,
                OwnerAssignedPayload(record=CONTACT, user_id="u-7", manual=False),
            ),
            "assigned automatically",
            id="owner_assigned_by_automation",
        ),
        pytest.param(
            inbound(
                ConversationMessageSent,
                ConversationMessagePayload(
                    record=CONTACT, channel=Channel.SMS, conversation_id="k"
                ),
            ),
            "not a person",
            id="message_sent_by_automation",
        ),
        pytest.param(
            inbound(UserChanged, UserChangedPayload(user_id="u-7", change=UserChange.DELETED)),
            "not handled yet",
            id="user_changed",
        ),
    ],
)
def test_events_that_never_exit_record_one_decision_saying_why(event: Message, why: str) -> None:
    signal = classify(event)
    assert not signal.may_exit

    decision = one(decide(signal, [Candidate(enrollment(), MatchKind.RECORD)]))

    assert decision.outcome is Outcome.IGNORED
    assert decision.enrollment is None
    assert why in decision.why


def test_auto_reply_is_recorded_against_the_replying_contact() -> None:
    decision = one(decide(classify(replied(auto_reply=True, record=CONTACT)), []))

    assert decision.outcome is Outcome.IGNORED
    assert decision.trigger is ExitTrigger.REPLIED
    assert decision.record == CONTACT


def test_an_ended_enrollment_never_exits_again() -> None:
    view = enrollment(status=EnrollmentStatus.ENDED)

    decision = one(decide(classify(replied()), [Candidate(view, MatchKind.THREAD)]))

    assert decision.outcome is Outcome.IGNORED
    assert decision.why == "the enrollment already ended"


def test_a_paused_enrollment_still_exits() -> None:
    view = enrollment(status=EnrollmentStatus.PAUSED)

    decision = one(decide(classify(replied()), [Candidate(view, MatchKind.THREAD)]))

    assert decision.outcome is Outcome.EXIT


def test_an_event_matching_no_enrollment_is_recorded_once() -> None:
    decision = one(decide(classify(replied(record=CONTACT)), []))

    assert decision.outcome is Outcome.IGNORED
    assert decision.record == CONTACT
    assert "no enrollment" in decision.why


def test_a_live_enrollment_of_an_unknown_workflow_version_is_retried_not_guessed() -> None:
    view = enrollment(workflow_known=False)

    with pytest.raises(WorkflowVersionUnknownError, match="'onboarding' version 3"):
        decide(classify(replied()), [Candidate(view, MatchKind.THREAD)])


def test_an_ended_enrollment_of_an_unknown_workflow_version_needs_no_retry() -> None:
    view = enrollment(workflow_known=False, status=EnrollmentStatus.ENDED)

    decision = one(decide(classify(replied()), [Candidate(view, MatchKind.THREAD)]))

    assert decision.outcome is Outcome.IGNORED


def test_a_candidate_of_another_account_is_a_bug_not_a_decision() -> None:
    view = enrollment(account_id="someone-else")

    with pytest.raises(CrossAccountError):
        decide(classify(replied()), [Candidate(view, MatchKind.ADDRESS)])


def test_an_enrollment_found_several_ways_is_decided_once_by_its_strongest_match() -> None:
    view = enrollment(unenroll_company_on_reply=True)
    candidates = [Candidate(view, kind) for kind in reversed(MatchKind)]

    decision = one(decide(classify(replied()), candidates))

    assert decision.matched_by is MatchKind.THREAD
    assert decision.reason is ExitReason.REPLIED


def test_reply_lookup_follows_the_thread_the_record_and_the_sender_address() -> None:
    event = replied(
        in_reply_to="<sent-2@offramp>",
        references=("<sent-1@offramp>", " <sent-2@offramp> "),
        record=CONTACT,
        from_address="Other.Address@Acme.com",
    )

    lookup = classify(event).lookup

    assert lookup.sent_message_ids == ("sent-2@offramp", "sent-1@offramp")
    assert lookup.records == (CONTACT,)
    assert lookup.addresses == ("other.address@acme.com",)
    assert lookup.include_aliases
    assert lookup.company_of_replier


def test_a_reply_from_an_alias_exits_the_enrollment_found_by_address() -> None:
    view = enrollment(triggers=frozenset({ExitTrigger.REPLIED}))
    signal = classify(replied(from_address="alias@acme.com", in_reply_to=None))

    decision = one(decide(signal, [Candidate(view, MatchKind.ADDRESS)]))

    assert decision.outcome is Outcome.EXIT
    assert decision.why == "replied (matched by address)"


def test_a_hard_bounce_matches_the_sending_address_only_not_aliases() -> None:
    event = inbound(
        EmailBounced, EmailBouncedPayload(from_address="c-1@acme.com", bounce=BounceKind.HARD)
    )

    assert classify(event).lookup.include_aliases is False


def test_a_click_is_looked_up_by_the_clicked_workflow_email_and_the_contact() -> None:
    event = inbound(
        EmailLinkClicked,
        EmailLinkClickedPayload(
            from_address="c-1@acme.com",
            record=CONTACT,
            workflow_message_id="<sent-9@offramp>",
            url="https://acme.com",
        ),
    )

    lookup = classify(event).lookup

    assert lookup.sent_message_ids == ("sent-9@offramp",)
    assert lookup.records == (CONTACT,)
    assert lookup.addresses == ("c-1@acme.com",)
    assert not lookup.company_of_replier


def test_a_colleague_in_a_workflow_that_unenrolls_the_company_exits_as_company_replied() -> None:
    replier = enrollment(CONTACT)
    colleague = enrollment(COLLEAGUE, unenroll_company_on_reply=True)

    decisions = decide(
        classify(replied()),
        [Candidate(replier, MatchKind.THREAD), Candidate(colleague, MatchKind.COMPANY)],
    )

    by_record = {d.record.id: d for d in decisions if d.record is not None}
    assert len(by_record) == 2
    assert by_record["c-1"].reason is ExitReason.REPLIED
    assert by_record["c-2"].outcome is Outcome.EXIT
    assert by_record["c-2"].reason is ExitReason.COMPANY_REPLIED
    assert by_record["c-2"].why == "someone from acme.com replied"


def test_a_colleague_stays_when_the_workflow_does_not_unenroll_the_company() -> None:
    colleague = enrollment(COLLEAGUE, unenroll_company_on_reply=False)

    decision = one(decide(classify(replied()), [Candidate(colleague, MatchKind.COMPANY)]))

    assert decision.outcome is Outcome.IGNORED
    assert "'unenroll the whole company' is off" in decision.why


def test_the_replier_company_comes_from_their_enrollments_ended_ones_included() -> None:
    direct = [
        Candidate(enrollment(company_domain=" Acme.COM."), MatchKind.THREAD),
        Candidate(
            enrollment(company_domain="acme.com", status=EnrollmentStatus.ENDED), MatchKind.RECORD
        ),
        Candidate(enrollment(company_domain="gmail.com"), MatchKind.ADDRESS),
        Candidate(enrollment(company_domain=None), MatchKind.ADDRESS),
    ]

    assert replier_company_domains(direct) == ("acme.com",)
    assert "gmail.com" in PERSONAL_EMAIL_DOMAINS
    assert replier_company_domains(direct, ignored=frozenset()) == ("acme.com", "gmail.com")


def test_a_meeting_counts_for_contact_attendees_and_a_contact_record_only() -> None:
    other = RecordRef(type=RecordType.CONTACT, id="c-9")
    on_contact = classify(meeting(attendees=(other, ORGANIZATION)))
    on_deal = classify(meeting(record=DEAL, attendees=(other,)))

    assert on_contact.lookup.attendees == (other, CONTACT)
    assert on_deal.lookup.attendees == (other,)
    assert on_deal.lookup.records == ()


def test_a_meeting_with_another_user_than_the_enroller_does_not_exit() -> None:
    view = enrollment(enrolled_by_user_id="u-1")

    decision = one(
        decide(classify(meeting(organizer_user_id="u-2")), [Candidate(view, MatchKind.ATTENDEE)])
    )

    assert decision.outcome is Outcome.IGNORED
    assert "another user" in decision.why


@pytest.mark.parametrize(
    ("organizer", "enrolled_by", "matched_by"),
    [
        pytest.param("u-1", "u-1", MatchKind.ATTENDEE, id="with_the_enroller"),
        pytest.param("u-2", "u-1", MatchKind.THREAD, id="through_a_workflow_email_link"),
        pytest.param(None, "u-1", MatchKind.ATTENDEE, id="organizer_unknown"),
        pytest.param("u-2", None, MatchKind.ATTENDEE, id="enrolled_by_automation"),
    ],
)
def test_a_meeting_exits_when_booked_with_the_enroller_or_through_a_workflow_email(
    organizer: str | None, enrolled_by: str | None, matched_by: MatchKind
) -> None:
    view = enrollment(enrolled_by_user_id=enrolled_by)

    decision = one(
        decide(classify(meeting(organizer_user_id=organizer)), [Candidate(view, matched_by)])
    )

    assert decision.outcome is Outcome.EXIT
    assert decision.reason is ExitReason.MEETING_BOOKED


def test_the_exit_command_names_the_enrollment_reason_and_triggering_event() -> None:
    event = replied()
    view = enrollment()
    decision = one(decide(classify(event), [Candidate(view, MatchKind.THREAD)]))

    command = exit_command(event, decision, topic=topics.INBOUND_EMAIL)

    assert command.type == "enrollment.exit"
    assert command.account_id == ACCOUNT
    assert command.causation_id == event.message_id
    assert command.correlation_id == event.message_id
    payload = command.payload
    assert payload.record == CONTACT
    assert payload.workflow_id == "onboarding"
    assert payload.enrollment_id == view.enrollment_id
    assert payload.reason is ExitReason.REPLIED
    assert payload.source is ExitSource.TRIGGER
    assert payload.actor == SYSTEM_ACTOR
    assert payload.triggering_event is not None
    assert payload.triggering_event.message_id == event.message_id
    assert payload.triggering_event.type == "email.replied"
    assert payload.triggering_event.topic == topics.INBOUND_EMAIL
    assert payload.triggering_event.occurred_at == AT
    assert command.partition_key() == f"{ACCOUNT}/contact/c-1"


def test_a_replayed_event_yields_the_same_exit_command_id() -> None:
    event = replied()
    view = enrollment()
    other_view = enrollment(COLLEAGUE)
    candidates = [Candidate(view, MatchKind.THREAD)]

    first = exit_command(event, one(decide(classify(event), candidates)), topic="t")
    replay = exit_command(event, one(decide(classify(event), candidates)), topic="t")
    other_enrollment = exit_command(
        event, one(decide(classify(event), [Candidate(other_view, MatchKind.RECORD)])), topic="t"
    )
    other_event = replied()
    from_other_event = exit_command(
        other_event, one(decide(classify(other_event), candidates)), topic="t"
    )

    assert first.message_id == replay.message_id
    assert first.message_id != other_enrollment.message_id
    assert first.message_id != from_other_event.message_id


def test_only_an_exit_decision_becomes_a_command() -> None:
    ignored = one(decide(classify(replied(auto_reply=True)), []))

    with pytest.raises(ValueError, match="only an exit decision"):
        exit_command(replied(), ignored, topic=topics.INBOUND_EMAIL)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("<a@b>", "a@b"), ("  <a@b> ", "a@b"), ("a@b", "a@b"), ("<>", None), ("", None), (None, None)],
)
def test_message_ids_are_compared_without_angle_brackets(
    raw: str | None, normalized: str | None
) -> None:
    assert normalize_message_id(raw) == normalized


def test_company_domains_are_compared_in_lower_case() -> None:
    assert company_domain_key(" WWW.Acme.com. ") == "www.acme.com"
    assert company_domain_key("  ") is None
    assert company_domain_key(None) is None


# Folding a run of enrollment events into one write per enrollment (``projection``).

ENROLLMENT_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
USER = Actor(kind=ActorKind.USER, id="u-1")


def ref() -> dict[str, Any]:
    return {
        "enrollment_id": ENROLLMENT_ID,
        "workflow_id": "onboarding",
        "workflow_version": 3,
        "record": CONTACT,
    }


def enrolled_event(
    email: str = "c-1@acme.com", *, account_id: str = ACCOUNT, actor: Actor = USER
) -> EnrollmentEnrolled:
    return EnrollmentEnrolled.create(
        account_id=account_id,
        payload=EnrolledPayload(
            **ref(),
            contact=ContactDetails(
                email=email, aliases=("c.one@acme.com",), company_domain="ACME.com"
            ),
            actor=actor,
        ),
    )


def paused_event(account_id: str = ACCOUNT) -> EnrollmentPaused:
    return EnrollmentPaused.create(
        account_id=account_id, payload=PausedPayload(**ref(), reason="manual", actor=USER)
    )


def resumed_event(account_id: str = ACCOUNT) -> EnrollmentResumed:
    return EnrollmentResumed.create(
        account_id=account_id, payload=ResumedPayload(**ref(), actor=USER)
    )


def exited_event(account_id: str = ACCOUNT) -> EnrollmentExited:
    return EnrollmentExited.create(
        account_id=account_id,
        payload=ExitedPayload(
            **ref(),
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=USER,
            steps_completed=1,
        ),
    )


def completed_event() -> EnrollmentCompleted:
    return EnrollmentCompleted.create(
        account_id=ACCOUNT, payload=CompletedPayload(**ref(), steps_completed=2)
    )


ALICE_KEYS = ContactKeys(
    email="c-1@acme.com",
    aliases=("c.one@acme.com",),
    company_domain="acme.com",
    enrolled_by_user_id="u-1",
)


@pytest.mark.parametrize(
    ("events", "status", "contact"),
    [
        pytest.param([enrolled_event()], None, ALICE_KEYS, id="enrolled"),
        pytest.param([paused_event()], EnrollmentStatus.PAUSED, None, id="lifecycle-only"),
        pytest.param(
            [enrolled_event(), exited_event()], EnrollmentStatus.ENDED, ALICE_KEYS, id="then-exit"
        ),
        pytest.param(
            [exited_event(), enrolled_event()], EnrollmentStatus.ENDED, ALICE_KEYS, id="exit-first"
        ),
        pytest.param(
            [completed_event(), resumed_event(), paused_event()],
            EnrollmentStatus.ENDED,
            None,
            id="ended-is-final",
        ),
        pytest.param(
            [paused_event(), resumed_event()], EnrollmentStatus.ACTIVE, None, id="last-status"
        ),
    ],
)
def test_a_run_of_one_enrollments_events_folds_into_one_change(
    events: list[EnrollmentEvent], status: EnrollmentStatus | None, contact: ContactKeys | None
) -> None:
    (change,) = fold_enrollment_events(events)

    assert change.enrollment_id == ENROLLMENT_ID
    assert change.account_id == ACCOUNT
    assert (change.status, change.contact) == (status, contact)


def test_the_last_enrolled_gives_the_contact_and_a_system_actor_no_enrolling_user() -> None:
    (change,) = fold_enrollment_events(
        [enrolled_event("old@acme.com"), enrolled_event(actor=SYSTEM_ACTOR)]
    )

    assert change.contact == ContactKeys(
        email="c-1@acme.com",
        aliases=("c.one@acme.com",),
        company_domain="acme.com",
        enrolled_by_user_id=None,
    )


def test_two_accounts_claiming_one_enrollment_id_fold_apart_in_order_of_appearance() -> None:
    changes = fold_enrollment_events(
        [paused_event("other"), enrolled_event(), exited_event("other"), resumed_event()]
    )

    assert [(c.account_id, c.status) for c in changes] == [
        ("other", EnrollmentStatus.ENDED),
        (ACCOUNT, EnrollmentStatus.ACTIVE),
    ]
    assert changes[1] == EnrollmentChange(
        ACCOUNT, changes[1].ref, EnrollmentStatus.ACTIVE, ALICE_KEYS
    )


def test_exit_ids_are_the_same_on_every_replay_and_differ_across_accounts() -> None:
    event_id, enrollment_id = uuid.uuid4(), uuid.uuid4()
    ours = exit_message_id("acme-account", event_id, enrollment_id)
    assert ours == exit_message_id("acme-account", event_id, enrollment_id)
    # The same upstream event id and enrollment id in another account: another exit.
    assert ours != exit_message_id("other-account", event_id, enrollment_id)
