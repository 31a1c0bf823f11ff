"""One table per trigger with rules: the event and the workflow's rules -> fires or not.

Each row is decided by the pure domain for one enrollment (matched the way the event's
lookup finds it) of a workflow with that trigger turned on and those rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.trigger_evaluator.domain import Candidate, MatchKind, Outcome, decide
from services.trigger_evaluator.triggers import classify
from shared.contracts import Message, RecordRef, RecordType
from shared.contracts.inbound import (
    AgentAssignedPayload,
    Channel,
    ConversationAgentAssigned,
    ConversationMessagePayload,
    ConversationMessageReceived,
    ConversationMessageSent,
    FieldChangedPayload,
    PageVisited,
    PageVisitedPayload,
    RecordFieldChanged,
)
from shared.contracts.trigger_settings import (
    ConversationSettings,
    FieldCondition,
    FieldOperator,
    FieldRule,
    LinkClickSettings,
    QueryParam,
    UrlMatch,
    UrlRule,
)
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from tests.support.builders.enrollment_events import T0
from tests.support.builders.inbound_events import click, inbound, meeting
from tests.support.builders.trigger_views import CONTACT, DEAL, ORGANIZATION
from tests.support.builders.trigger_views import enrollment_view as enrollment

pytestmark = pytest.mark.unit

FIRES, STAYS = Outcome.EXIT, Outcome.IGNORED


def outcome(
    event: Message,
    trigger: ExitTrigger,
    *,
    record: RecordRef = CONTACT,
    matched_by: MatchKind = MatchKind.RECORD,
    sent_at_offset: timedelta | None = None,
    **settings: Any,
) -> Outcome:
    view = enrollment(
        record,
        triggers=frozenset({trigger}),
        settings=WorkflowSettings(exit_triggers=frozenset({trigger}), **settings),
    )
    sent_at = T0 + sent_at_offset if sent_at_offset is not None else None
    [decision] = decide(classify(event), [Candidate(view, matched_by, sent_at)])
    return decision.outcome


def visit(url: str) -> PageVisited:
    return inbound(PageVisited, PageVisitedPayload(record=CONTACT, url=url))


def rule(match: UrlMatch, pattern: str, **params: str | None) -> UrlRule:
    query = tuple(QueryParam(name=n, value=v) for n, v in params.items())
    return UrlRule(match=match, pattern=pattern, query=query)


PRICING = rule(UrlMatch.EXACT, "https://www.acme.com/pricing/")
BLOG = rule(UrlMatch.PREFIX, "acme.com/blog")
DEMO = rule(UrlMatch.CONTAINS, "demo")
DOCS = rule(UrlMatch.GLOB, "docs.acme.com/*/install")
CAREERS = rule(UrlMatch.REGEX, r"^acme\.com/(jobs|careers)(/|$)")
PRO_PLAN = rule(UrlMatch.EXACT, "acme.com/signup?plan=pro")
CAMPAIGN = rule(UrlMatch.PREFIX, "acme.com/lp", utm_campaign="q4", ref=None)


@pytest.mark.parametrize(
    ("url", "rules", "expected"),
    [
        ("http://acme.com/anything", (), FIRES),  # no rules: any page
        ("https://acme.com/pricing", (PRICING,), FIRES),
        ("HTTP://WWW.ACME.COM:443/Pricing/?utm_source=x#plans", (PRICING,), FIRES),
        ("acme.com/pricing", (PRICING,), FIRES),
        ("https://acme.com/pricing/enterprise", (PRICING,), STAYS),
        ("https://acme.com/blog/why-offramp", (BLOG,), FIRES),
        ("https://acme.com/about", (BLOG,), STAYS),
        ("https://acme.com/book-a-demo", (DEMO,), FIRES),
        ("https://acme.com/docs", (DEMO,), STAYS),
        ("https://docs.acme.com/v2/install/", (DOCS,), FIRES),
        ("https://docs.acme.com/v2/upgrade", (DOCS,), STAYS),
        ("https://acme.com/careers/42", (CAREERS,), FIRES),
        ("https://acme.com/careersfair", (CAREERS,), STAYS),
        ("https://acme.com/signup?plan=PRO&x=1", (PRO_PLAN,), FIRES),
        ("https://acme.com/signup?plan=free", (PRO_PLAN,), STAYS),
        ("https://acme.com/signup", (PRO_PLAN,), STAYS),
        ("https://acme.com/lp/x?utm_campaign=q4&ref=", (CAMPAIGN,), FIRES),
        ("https://acme.com/lp/x?utm_campaign=q4", (CAMPAIGN,), STAYS),
        ("https://acme.com/about", (PRICING, BLOG, DEMO), STAYS),
        ("https://acme.com/blog/x", (PRICING, BLOG, DEMO), FIRES),  # any of several
    ],
)
def test_page_visited(url: str, rules: tuple[UrlRule, ...], expected: Outcome) -> None:
    assert outcome(visit(url), ExitTrigger.PAGE_VISITED, page_rules=rules) is expected


def changed(field: str, new_value: Any, record: RecordRef = CONTACT) -> RecordFieldChanged:
    return inbound(
        RecordFieldChanged, FieldChangedPayload(record=record, field=field, new_value=new_value)
    )


def when(field: str, *conditions: tuple[FieldOperator, Any]) -> FieldRule:
    return FieldRule(
        field=field, conditions=tuple(FieldCondition(operator=o, value=v) for o, v in conditions)
    )


STAGE_CUSTOMER = when("lifecyclestage", (FieldOperator.IS, "customer"))
ANY_PHONE = when("phone")
BIG = when("amount", (FieldOperator.GREATER, 10_000))
RECENT = when("last_contacted", (FieldOperator.WITHIN_DAYS, 7))
REGIONS = when("region", (FieldOperator.IN, ("emea", "apac")))
NOT_CHURNED = when("status", (FieldOperator.SET, None), (FieldOperator.IS_NOT, "churned"))


@pytest.mark.parametrize(
    ("event", "rules", "record", "expected"),
    [
        (changed("anything", 1), (), CONTACT, FIRES),  # no rules: any field
        (changed("lifecyclestage", "Customer"), (STAGE_CUSTOMER,), CONTACT, FIRES),
        (changed("lifecyclestage", "lead"), (STAGE_CUSTOMER,), CONTACT, STAYS),
        (changed("city", "customer"), (STAGE_CUSTOMER,), CONTACT, STAYS),
        (changed("phone", "+33 1"), (ANY_PHONE,), CONTACT, FIRES),
        (changed("amount", 25_000, DEAL), (BIG,), DEAL, FIRES),
        (changed("amount", 5_000, DEAL), (BIG,), DEAL, STAYS),
        (
            changed("last_contacted", (T0 - timedelta(days=2)).isoformat()),
            (RECENT,),
            CONTACT,
            FIRES,
        ),
        (changed("last_contacted", "2025-01-01"), (RECENT,), CONTACT, STAYS),
        (changed("region", ("na", "emea"), ORGANIZATION), (REGIONS,), ORGANIZATION, FIRES),
        (changed("region", "latam", ORGANIZATION), (REGIONS,), ORGANIZATION, STAYS),
        (changed("status", "active"), (NOT_CHURNED,), CONTACT, FIRES),
        (changed("status", "churned"), (NOT_CHURNED,), CONTACT, STAYS),
        (changed("status", None), (NOT_CHURNED,), CONTACT, STAYS),
    ],
)
def test_field_set_or_updated_for_contacts_organizations_and_deals(
    event: RecordFieldChanged, rules: tuple[FieldRule, ...], record: RecordRef, expected: Outcome
) -> None:
    result = outcome(event, ExitTrigger.FIELD_CHANGED, record=record, field_rules=rules)

    assert result is expected


def message(
    kind: type[ConversationMessageReceived] | type[ConversationMessageSent],
    channel: Channel = Channel.SMS,
    **fields: Any,
) -> Message:
    payload = ConversationMessagePayload(
        record=CONTACT, channel=channel, conversation_id="conv-1", **fields
    )
    return inbound(kind, payload)


def assigned(*, manual: bool) -> ConversationAgentAssigned:
    payload = AgentAssignedPayload(
        record=CONTACT, conversation_id="conv-1", user_id="u-2", manual=manual
    )
    return inbound(ConversationAgentAssigned, payload)


ONLY_CHAT = ConversationSettings(channels=(Channel.CHAT,))


@pytest.mark.parametrize(
    ("event", "trigger", "settings", "expected"),
    [
        (message(ConversationMessageReceived), ExitTrigger.MESSAGE_RECEIVED, {}, FIRES),
        (
            message(ConversationMessageReceived, Channel.SMS),
            ExitTrigger.MESSAGE_RECEIVED,
            {"conversations": ONLY_CHAT},
            STAYS,
        ),
        (
            message(ConversationMessageReceived, Channel.CHAT),
            ExitTrigger.MESSAGE_RECEIVED,
            {"conversations": ONLY_CHAT},
            FIRES,
        ),
        (
            message(ConversationMessageSent, sent_by_user_id="u-2"),
            ExitTrigger.MESSAGE_SENT_BY_PERSON,
            {},
            FIRES,
        ),
        (message(ConversationMessageSent), ExitTrigger.MESSAGE_SENT_BY_PERSON, {}, STAYS),
        (
            # The workflow's own message carries the marker, even with a sender's name.
            message(
                ConversationMessageSent,
                sent_by_user_id="u-2",
                offramp_enrollment_id="5f0b7a3c-1e5d-4c8e-9a41-7b6e2d9f0c15",
            ),
            ExitTrigger.MESSAGE_SENT_BY_PERSON,
            {},
            STAYS,
        ),
        (assigned(manual=True), ExitTrigger.USER_ASSIGNED, {}, FIRES),
        (assigned(manual=False), ExitTrigger.USER_ASSIGNED, {}, STAYS),
    ],
)
def test_conversation(
    event: Message, trigger: ExitTrigger, settings: dict[str, Any], expected: Outcome
) -> None:
    assert outcome(event, trigger, **settings) is expected


SCANNER_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel)"
BROWSER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15"


@pytest.mark.parametrize(
    ("user_agent", "sent_before_click", "settings", "expected"),
    [
        (BROWSER_UA, timedelta(minutes=5), LinkClickSettings(), FIRES),
        (SCANNER_UA, timedelta(minutes=5), LinkClickSettings(), STAYS),
        (BROWSER_UA, timedelta(seconds=3), LinkClickSettings(), STAYS),
        (BROWSER_UA, timedelta(seconds=3), LinkClickSettings(scanner_window_s=2), FIRES),
        (SCANNER_UA, timedelta(seconds=1), LinkClickSettings(ignore_scanner_clicks=False), FIRES),
    ],
)
def test_link_clicked(
    user_agent: str, sent_before_click: timedelta, settings: LinkClickSettings, expected: Outcome
) -> None:
    event = click(workflow_message_id="<m-1@o>", user_agent=user_agent, occurred_at=T0)

    result = outcome(
        event,
        ExitTrigger.LINK_CLICKED,
        matched_by=MatchKind.THREAD,
        sent_at_offset=-sent_before_click,
        link_clicks=settings,
    )

    assert result is expected


def test_a_click_outside_a_workflow_email_never_fires() -> None:
    assert outcome(click(workflow_message_id=None), ExitTrigger.LINK_CLICKED) is STAYS


ENROLLER, OTHER_USER = "u-enroller", "u-other"


@pytest.mark.parametrize(
    ("fields", "matched_by", "enrolled_at_offset", "expected"),
    [
        ({"organizer_user_id": ENROLLER}, MatchKind.ATTENDEE, None, FIRES),
        ({"organizer_user_id": OTHER_USER}, MatchKind.ATTENDEE, None, STAYS),
        # Through a meeting link in a workflow email: any user's calendar counts.
        (
            {"organizer_user_id": OTHER_USER, "via_message_id": "<m-1@o>"},
            MatchKind.THREAD,
            None,
            FIRES,
        ),
        ({}, MatchKind.ATTENDEE, None, FIRES),  # organizer unknown: not another user's
        # Took place before the enrollment, logged while enrolled: counts.
        (
            {"organizer_user_id": ENROLLER, "logged_at": T0 + timedelta(hours=2)},
            MatchKind.ATTENDEE,
            timedelta(hours=1),
            FIRES,
        ),
        # Took place and was logged before the enrollment: not about it.
        ({"organizer_user_id": ENROLLER}, MatchKind.ATTENDEE, timedelta(hours=1), STAYS),
    ],
)
def test_meeting_booked(
    fields: dict[str, Any],
    matched_by: MatchKind,
    enrolled_at_offset: timedelta | None,
    expected: Outcome,
) -> None:
    event = meeting(attendees=(CONTACT,), **fields)
    view = enrollment(
        triggers=frozenset({ExitTrigger.MEETING_BOOKED}),
        enrolled_by_user_id=ENROLLER,
        enrolled_at=T0 + enrolled_at_offset if enrolled_at_offset is not None else None,
    )

    [decision] = decide(classify(event), [Candidate(view, matched_by)])

    assert decision.outcome is expected


@pytest.mark.parametrize(
    ("record_type", "trigger", "allowed"),
    [
        (RecordType.CONTACT, ExitTrigger.REPLIED, True),
        (RecordType.CONTACT, ExitTrigger.PAGE_VISITED, True),
        (RecordType.CONTACT, ExitTrigger.DEAL_WON, False),
        (RecordType.ORGANIZATION, ExitTrigger.FIELD_CHANGED, True),
        (RecordType.ORGANIZATION, ExitTrigger.REPLIED, False),
        (RecordType.DEAL, ExitTrigger.DEAL_WON, True),
        (RecordType.DEAL, ExitTrigger.DEAL_LOST, True),
        (RecordType.DEAL, ExitTrigger.DEAL_OPENED, True),
        (RecordType.DEAL, ExitTrigger.FIELD_CHANGED, True),
        (RecordType.DEAL, ExitTrigger.MEETING_BOOKED, False),
    ],
)
def test_which_triggers_each_workflow_type_may_turn_on(
    record_type: RecordType, trigger: ExitTrigger, allowed: bool
) -> None:
    def apply() -> WorkflowDefinition:
        return WorkflowDefinition(
            workflow_id="wf",
            name="wf",
            record_type=record_type,
            steps=(Step(step_id="s", body="Hi"),),
            settings=WorkflowSettings(exit_triggers=frozenset({trigger})),
        )

    if allowed:
        assert trigger in apply().settings.exit_triggers
    else:
        with pytest.raises(ValidationError, match="do not apply to"):
            apply()
