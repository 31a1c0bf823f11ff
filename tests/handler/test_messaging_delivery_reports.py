"""Delivery-status callbacks (``message.delivery_status``) in messaging: each report is
recorded on the send it names, and a sent message reported undelivered is published once
as ``message.undelivered``; late, older, repeated and unknown reports change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.messaging.delivery import ReportedSend
from shared.contracts.events import FailureKind, MessageSent, MessageUndelivered
from shared.contracts.inbound import Channel, DeliveryStatus
from tests.support.builders.enrollment_events import OTHER_ACCOUNT, T0
from tests.support.builders.messaging_events import (
    ENROLLMENT,
    delivery_status,
    enrollment_enrolled,
    granted,
)
from tests.support.fakes.messaging_harness import MessagingHarness, messaging_harness

pytestmark = pytest.mark.handler

LATER = T0 + timedelta(minutes=5)


@pytest.fixture
async def sent() -> tuple[MessagingHarness, str]:
    """An SMS step that went out: the harness and the message's id."""
    h = messaging_harness()
    await h.ready(enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.given(granted(ENROLLMENT, step_index=1, step_id="nudge", channel=Channel.SMS))
    [message] = await h.send_due()
    assert isinstance(message, MessageSent)
    return h, message.payload.provider_message_id


async def _reported(h: MessagingHarness, message_id: str) -> ReportedSend:
    found = await h.store.sends_reported({(h.row(1).send.account_id, message_id)})
    [reported] = found.values()
    return reported


async def test_a_sent_sms_reported_undelivered_is_published_as_undelivered(
    sent: tuple[MessagingHarness, str],
) -> None:
    h, message_id = sent
    outcome = await h.when(
        delivery_status(message_id, DeliveryStatus.UNDELIVERED, at=LATER, error_code="30005")
    )
    [undelivered] = outcome.of_type(MessageUndelivered)
    payload = undelivered.payload
    assert (payload.enrollment_id, payload.step_index) == (ENROLLMENT, 1)
    assert (payload.kind, payload.status) == (FailureKind.HARD_BOUNCE, DeliveryStatus.UNDELIVERED)
    assert payload.provider_message_id == message_id
    assert (
        payload.reason == "provider reported undelivered (code 30005): Unknown destination handset"
    )
    assert (await _reported(h, message_id)).delivery_status is DeliveryStatus.UNDELIVERED
    assert h.row(1).status == "sent"  # the step went out: its outcome stands


async def test_a_failure_without_a_known_code_is_rejected_and_published_once(
    sent: tuple[MessagingHarness, str],
) -> None:
    h, message_id = sent
    first = await h.when(
        delivery_status(message_id, DeliveryStatus.FAILED, at=LATER, error_code="30007")
    )
    [undelivered] = first.of_type(MessageUndelivered)
    assert undelivered.payload.kind is FailureKind.REJECTED
    again = await h.when(
        delivery_status(message_id, DeliveryStatus.UNDELIVERED, at=LATER + timedelta(seconds=1))
    )
    assert again.published == []


async def test_delivered_reports_are_recorded_without_an_event(
    sent: tuple[MessagingHarness, str],
) -> None:
    h, message_id = sent
    outcome = await h.when(
        delivery_status(message_id, DeliveryStatus.SENT, at=LATER),
        delivery_status(message_id, DeliveryStatus.DELIVERED, at=LATER + timedelta(seconds=3)),
    )
    assert outcome.published == []
    reported = await _reported(h, message_id)
    assert (reported.delivery_status, reported.delivery_reported_at) == (
        DeliveryStatus.DELIVERED,
        LATER + timedelta(seconds=3),
    )


async def test_an_older_report_arriving_late_changes_nothing(
    sent: tuple[MessagingHarness, str],
) -> None:
    h, message_id = sent
    outcome = await h.when(
        delivery_status(message_id, DeliveryStatus.DELIVERED, at=LATER),
        delivery_status(message_id, DeliveryStatus.UNDELIVERED, at=LATER - timedelta(seconds=9)),
    )
    assert outcome.published == []
    assert (await _reported(h, message_id)).delivery_status is DeliveryStatus.DELIVERED


async def test_reports_about_unknown_messages_or_another_accounts_are_ignored(
    sent: tuple[MessagingHarness, str],
) -> None:
    h, message_id = sent
    outcome = await h.when(
        delivery_status("<someone-else@elsewhere.test>", DeliveryStatus.FAILED, at=LATER),
        delivery_status(message_id, DeliveryStatus.FAILED, at=LATER, account=OTHER_ACCOUNT),
    )
    assert outcome.published == []
    assert outcome.rejected == []
    assert (await _reported(h, message_id)).delivery_status is None
