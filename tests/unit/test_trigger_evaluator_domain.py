"""trigger-evaluator's pure decisions: which inbound events exit which enrollments, and why."""

from __future__ import annotations

from typing import Any

import pytest

from services.trigger_evaluator.domain import (
    PERSONAL_EMAIL_DOMAINS,
    Candidate,
    EnrollmentStatus,
    MatchKind,
    Outcome,
    decide,
    replier_company_domains,
)
from services.trigger_evaluator.errors import CrossAccountError, WorkflowVersionUnknownError
from services.trigger_evaluator.triggers import classify
from shared.contracts import (
    Message,
    RecordRef,
)
from shared.contracts.commands import ExitReason
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
    EmailThreadStarted,
    EmailThreadStartedPayload,
    EmailUnsubscribed,
    FieldChangedPayload,
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
from tests.support.builders.inbound_events import inbound, meeting
from tests.support.builders.inbound_events import reply_from_contact as replied
from tests.support.builders.trigger_views import (
    COLLEAGUE,
    CONTACT,
    DEAL,
    ORGANIZATION,
)
from tests.support.builders.trigger_views import enrollment_view as enrollment

pytestmark = pytest.mark.unit


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


def test_a_reply_from_an_alias_exits_the_enrollment_found_by_address() -> None:
    view = enrollment(triggers=frozenset({ExitTrigger.REPLIED}))
    signal = classify(replied(from_address="alias@acme.com", in_reply_to=None))

    decision = one(decide(signal, [Candidate(view, MatchKind.ADDRESS)]))

    assert decision.outcome is Outcome.EXIT
    assert decision.why == "replied (matched by address)"


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
