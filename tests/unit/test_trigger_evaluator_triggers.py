"""trigger-evaluator's trigger table: what each inbound event means and where its
enrollments are looked for (``triggers.classify``)."""

from __future__ import annotations

import pytest

from services.trigger_evaluator.domain import (
    company_domain_key,
)
from services.trigger_evaluator.triggers import EXIT_RULES, classify, normalize_message_id
from shared.contracts import (
    MESSAGES_BY_TOPIC,
    RecordRef,
    RecordType,
    topics,
)
from shared.contracts.inbound import (
    BounceKind,
    EmailBounced,
    EmailBouncedPayload,
    EmailLinkClicked,
    EmailLinkClickedPayload,
    MessageDeliveryStatus,
)
from tests.support.builders.inbound_events import inbound, meeting
from tests.support.builders.inbound_events import reply_from_contact as replied
from tests.support.builders.trigger_views import (
    CONTACT,
    DEAL,
    ORGANIZATION,
)

pytestmark = pytest.mark.unit


def test_every_inbound_event_type_has_a_row_in_the_trigger_table() -> None:
    inbound_topics = (
        topics.INBOUND_EMAIL,
        topics.INBOUND_WEB,
        topics.INBOUND_CRM,
        topics.INBOUND_CONVERSATION,
    )
    inbound_types = {model.TYPE for t in inbound_topics for model in MESSAGES_BY_TOPIC[t]}
    # Record data (not triggers) feeds the projection of associations (``record_links``);
    # providers' delivery reports travel with conversations for messaging: never a trigger.
    record_data = {"record.upserted", "record.deleted", "association.changed"}
    assert set(EXIT_RULES) == inbound_types - record_data - {MessageDeliveryStatus.TYPE}


def test_trigger_reasons_are_the_reasons_named_after_the_trigger() -> None:
    for rule in EXIT_RULES.values():
        if rule is not None:
            assert rule.reason.value == rule.trigger.value


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


def test_a_hard_bounce_matches_the_sending_address_only_not_aliases() -> None:
    event = inbound(
        EmailBounced, EmailBouncedPayload(from_address="c-1@acme.com", bounce=BounceKind.HARD)
    )

    assert classify(event).lookup.include_aliases is False


def test_a_click_is_looked_up_by_the_clicked_workflow_email_only() -> None:
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

    # Only links in this workflow's emails: the contact's other workflows are not found.
    assert lookup.sent_message_ids == ("sent-9@offramp",)
    assert lookup.records == ()
    assert lookup.addresses == ()
    assert not lookup.company_of_replier


def test_a_meeting_counts_for_contact_attendees_and_a_contact_record_only() -> None:
    other = RecordRef(type=RecordType.CONTACT, id="c-9")
    on_contact = classify(meeting(attendees=(other, ORGANIZATION)))
    on_deal = classify(meeting(record=DEAL, attendees=(other,)))

    assert on_contact.lookup.attendees == (other, CONTACT)
    assert on_deal.lookup.attendees == (other,)
    assert on_deal.lookup.records == ()


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
