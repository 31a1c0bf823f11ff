"""messaging's sender on the fake store: the send-time re-check decides between
``message.sent`` and ``message.cancelled``, a new grant (not a resume) sends what the
pause stopped, and
failed provider calls are retried with the same Message-ID over the retry budget, then
given up with ``message.failed`` (at once for a permanent refusal). Crashes, leases and
shutdowns are in test_messaging_claims.

Consumer cases run on the harness (as one batch and message by message); the sender's
transactions run on the store the batches went to.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.messaging.domain import cancel_event_id
from shared.contracts import derived_message_id, topics
from shared.contracts.events import (
    CancelReason,
    FailureKind,
    MessageCancelled,
    MessageFailed,
    MessageSent,
)
from shared.contracts.inbound import Channel
from tests.support.builders.enrollment_events import (
    ACCOUNT,
    OTHER_ACCOUNT,
    T0,
    completed,
    exited,
    paused,
)
from tests.support.builders.messaging_events import (
    DOMAIN,
    ENROLLMENT,
    LEASE,
    dispatch_of,
    enrollment_enrolled,
    granted,
    resumed,
    workflow_applied,
)
from tests.support.fakes.messaging_harness import MessagingHarness, messaging_harness

pytestmark = pytest.mark.handler

NOW = T0


@pytest.fixture
def h() -> MessagingHarness:
    return messaging_harness()


# --- the send-time re-check ---


async def test_an_active_enrollment_is_sent_and_reported_with_its_message_id(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT))
    due = granted(ENROLLMENT)
    await h.when(due)
    published = await h.send_due()
    [email] = h.email.accepted
    assert (email.message_id, email.recipient) == (f"<{ENROLLMENT}.0@{DOMAIN}>", "ada@example.com")
    assert [type(m) for m in published] == [MessageSent]
    assert h.topics == [topics.MESSAGING_EVENTS]
    sent = published[0]
    assert isinstance(sent, MessageSent)
    assert sent.message_id == derived_message_id("message.sent", ACCOUNT, ENROLLMENT, 0)
    assert sent.payload.provider_message_id == email.message_id
    assert sent.payload.recipient == "ada@example.com"
    assert (sent.payload.step_index, sent.payload.step_id) == (0, "intro")
    assert (sent.causation_id, sent.correlation_id) == (due.message_id, due.message_id)
    assert h.row().status == "sent"
    assert h.row().sent_at == sent.payload.sent_at


async def test_a_paused_enrollment_gets_nothing_at_send_time(h: MessagingHarness) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT), paused(ENROLLMENT))
    published = await h.send_due()
    assert h.email.calls == 0
    [cancelled] = published
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.message_id == cancel_event_id(
        ACCOUNT,
        ENROLLMENT,
        0,
        reason=CancelReason.ENROLLMENT_PAUSED,
        dispatch_id=dispatch_of(ENROLLMENT),
    )
    assert cancelled.payload.reason is CancelReason.ENROLLMENT_PAUSED
    assert cancelled.payload.dispatch_id == dispatch_of(ENROLLMENT)
    assert (h.row().status, h.row().cancel_reason) == ("cancelled", CancelReason.ENROLLMENT_PAUSED)


@pytest.mark.parametrize(
    ("change", "reason"),
    [(exited, CancelReason.ENROLLMENT_EXITED), (completed, CancelReason.ENROLLMENT_COMPLETED)],
)
async def test_an_ended_enrollments_queued_steps_are_cancelled_by_the_event_itself(
    h: MessagingHarness, change: Any, reason: CancelReason
) -> None:
    """Not left to the sender: a send waiting for the renewal of its lapsed grant would
    never be claimed again to be cancelled."""
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    outcome = await h.when(change(ENROLLMENT))
    [cancelled] = outcome.of_type(MessageCancelled)
    assert (cancelled.payload.reason, cancelled.payload.step_index) == (reason, 0)
    assert cancelled.payload.dispatch_id == dispatch_of(ENROLLMENT)
    assert (h.row().status, h.row().cancel_reason) == ("cancelled", reason)
    assert await h.send_due() == []
    assert h.email.calls == 0


async def test_an_email_step_to_a_contact_without_an_address_is_cancelled(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT, email=None), granted(ENROLLMENT))
    [cancelled] = await h.send_due()
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.NO_RECIPIENT
    assert h.email.calls == 0


async def test_a_step_waits_for_its_enrollment_to_be_projected(h: MessagingHarness) -> None:
    await h.ready(granted(ENROLLMENT))  # step.due overtook enrollment.enrolled
    assert await h.send_due() == []
    await h.when(enrollment_enrolled(ENROLLMENT))
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)


async def test_a_step_whose_enrollment_never_arrives_is_cancelled_as_having_no_recipient(
    h: MessagingHarness,
) -> None:
    await h.ready(granted(ENROLLMENT))
    assert await h.cancel_orphans(now=NOW) == (0, [])  # it may still come: the grace period
    count, [cancelled] = await h.cancel_orphans(now=NOW + timedelta(minutes=10))
    assert count == 1
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.NO_RECIPIENT


async def test_sms_goes_to_the_contacts_phone_through_its_own_provider(
    h: MessagingHarness,
) -> None:
    h.sms.reference = "SM0001"
    await h.ready(enrollment_enrolled(ENROLLMENT, phone="+1 415 555 0123"))
    await h.when(granted(ENROLLMENT, step_index=1, step_id="nudge", channel=Channel.SMS))
    [sent] = await h.send_due()
    [message] = h.sms.accepted
    assert (message.sender, message.recipient) == ("+15550100", "+14155550123")
    assert (message.channel, message.record) == (Channel.SMS, "contact:c-1")
    assert isinstance(sent, MessageSent)
    assert sent.payload.channel is Channel.SMS
    assert (sent.payload.recipient, sent.payload.provider_reference) == ("+14155550123", "SM0001")
    assert sent.payload.segments == 1  # "Ping"
    assert h.email.calls == 0


async def test_an_sms_step_for_a_contact_without_a_phone_is_cancelled(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT))
    await h.when(granted(ENROLLMENT, step_index=1, step_id="nudge", channel=Channel.SMS))
    [cancelled] = await h.send_due()
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.NO_RECIPIENT
    assert h.sms.calls == 0


async def test_an_email_is_sent_without_segments_or_a_provider_reference(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT))
    await h.when(granted(ENROLLMENT))
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    assert (sent.payload.segments, sent.payload.provider_reference) == (None, None)


async def test_a_resume_alone_does_not_send_what_the_pause_cancelled(
    h: MessagingHarness,
) -> None:
    """Sending it without a new grant would send without authorization."""
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT), paused(ENROLLMENT))
    await h.send_due()
    wakeups = h.store.wakeups
    await h.when(resumed(ENROLLMENT))
    assert (h.row().status, h.row().cancel_reason) == ("cancelled", CancelReason.ENROLLMENT_PAUSED)
    assert h.store.wakeups == wakeups
    assert await h.send_due() == []
    assert h.email.calls == 0


async def test_a_new_grant_after_the_resume_sends_what_the_pause_cancelled(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT), paused(ENROLLMENT))
    await h.send_due()
    await h.given(resumed(ENROLLMENT))
    again = dispatch_of(ENROLLMENT, n=2)
    later = NOW + timedelta(minutes=10)
    wakeups = h.store.wakeups

    await h.when(granted(ENROLLMENT, dispatch_id=again, lease_until=later + LEASE))

    assert (h.row().status, h.row().send.dispatch_id) == ("pending", again)
    assert h.store.wakeups == wakeups + 1
    [sent] = await h.send_due(now=later)
    assert isinstance(sent, MessageSent)
    assert sent.payload.dispatch_id == again
    assert len(h.email.accepted) == 1


async def test_an_exit_is_never_requeued(h: MessagingHarness) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT), exited(ENROLLMENT))
    await h.send_due()
    await h.when(resumed(ENROLLMENT))
    await h.when(granted(ENROLLMENT, dispatch_id=dispatch_of(ENROLLMENT, n=2)))
    assert h.row().cancel_reason is CancelReason.ENROLLMENT_EXITED
    assert await h.send_due() == []
    assert h.email.calls == 0


# --- provider failures ---


async def test_a_failed_attempt_is_retried_later_with_the_same_message_id(
    h: MessagingHarness,
) -> None:
    h.email.failures = 1
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    assert await h.send_due() == []
    row = h.row()
    assert (row.status, row.send.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "relay unreachable" in row.last_error
    assert row.next_attempt_at == NOW + timedelta(seconds=2)
    assert await h.send_due(now=NOW + timedelta(seconds=1)) == []  # not due yet
    [sent] = await h.send_due(now=NOW + timedelta(seconds=2))
    assert isinstance(sent, MessageSent)
    assert [e.message_id for e in h.email.accepted] == [f"<{ENROLLMENT}.0@{DOMAIN}>"]


async def test_a_send_that_keeps_failing_past_the_budget_fails_with_message_failed(
    h: MessagingHarness,
) -> None:
    """The budget (``RETRY``: a minute here, hours in production) counts from the first
    failure; the last retry falls at its end."""
    h.email.failures = 100
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    published = [
        *await h.send_due(),  # fails at T0: retry at +2 s
        *await h.send_due(now=NOW + timedelta(seconds=2)),  # retry at +6 s
        *await h.send_due(now=NOW + timedelta(seconds=6)),  # retry at +14 s
        *await h.send_due(now=NOW + timedelta(seconds=14)),  # retry at +34 s
        *await h.send_due(now=NOW + timedelta(seconds=34)),  # retry at +54 s
        *await h.send_due(now=NOW + timedelta(seconds=54)),  # retry at the budget's end
    ]
    assert published == []
    assert h.row().next_attempt_at == NOW + timedelta(seconds=60)
    [failed] = await h.send_due(now=NOW + timedelta(seconds=60))
    assert isinstance(failed, MessageFailed)
    assert failed.message_id == derived_message_id("message.failed", ACCOUNT, ENROLLMENT, 0)
    assert failed.payload.kind is FailureKind.RETRIES_EXHAUSTED
    assert failed.payload.reason == "ConnectionRefusedError('relay unreachable (7)')"
    assert (failed.payload.attempts, failed.payload.recipient) == (7, "ada@example.com")
    assert failed.payload.provider_message_id == f"<{ENROLLMENT}.0@{DOMAIN}>"
    assert (failed.payload.step_index, failed.payload.step_id) == (0, "intro")
    assert (h.row().status, h.row().send.attempts) == ("failed", 7)
    assert h.row().failure_kind is FailureKind.RETRIES_EXHAUSTED
    assert h.email.calls == 7
    assert (h.sender.stats.retried, h.sender.stats.failed) == (6, 1)
    assert h.topics == [topics.MESSAGING_EVENTS]
    assert await h.send_due(now=NOW + timedelta(hours=1)) == []


async def test_a_recipient_refused_for_good_fails_at_once_as_a_hard_bounce(
    h: MessagingHarness,
) -> None:
    h.email.refuse = True
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    [failed] = await h.send_due()
    assert isinstance(failed, MessageFailed)
    assert failed.payload.kind is FailureKind.HARD_BOUNCE
    assert (failed.payload.reason, failed.payload.attempts) == ("550 5.1.1 no such user", 1)
    assert (h.row().status, h.row().send.attempts) == ("failed", 1)
    assert h.row().last_error == "550 5.1.1 no such user"


async def test_another_permanent_refusal_fails_at_once_as_rejected(h: MessagingHarness) -> None:
    h.email.refuse, h.email.refusal = True, FailureKind.REJECTED
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    [failed] = await h.send_due()
    assert isinstance(failed, MessageFailed)
    assert (failed.payload.kind, failed.payload.reason) == (FailureKind.REJECTED, "554")
    assert h.email.calls == 1


async def test_a_success_after_failures_is_sent_and_a_later_failure_gets_a_new_budget(
    h: MessagingHarness,
) -> None:
    h.email.failures = 2
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    await h.send_due()
    assert h.row().send.first_failed_at == NOW
    await h.send_due(now=NOW + timedelta(seconds=2))
    assert h.row().send.first_failed_at == NOW  # the budget counts from the first failure
    [sent] = await h.send_due(now=NOW + timedelta(seconds=6))
    assert isinstance(sent, MessageSent)
    assert h.row().send.attempts == 3


# --- accounts ---


async def test_two_accounts_sends_for_one_enrollment_id_stay_apart(h: MessagingHarness) -> None:
    other = OTHER_ACCOUNT
    await h.ready(
        workflow_applied(other),
        enrollment_enrolled(ENROLLMENT),
        enrollment_enrolled(ENROLLMENT, email="bob@example.com", account=other),
    )
    await h.when(granted(ENROLLMENT), granted(ENROLLMENT, account=other))
    assert len(h.store.sends) == 2  # one send per account, not one for both
    exit_outcome = await h.when(exited(ENROLLMENT, account=other))

    messages = [*exit_outcome.published, *await h.send_due()]

    sent = [m for m in messages if isinstance(m, MessageSent)]
    cancelled = [m for m in messages if isinstance(m, MessageCancelled)]
    assert [(m.account_id, m.payload.recipient) for m in sent] == [(ACCOUNT, "ada@example.com")]
    assert [m.account_id for m in cancelled] == [other]
    assert sent[0].message_id != cancelled[0].message_id
    assert h.row().status == "sent"
    assert h.row(account=other).status == "cancelled"


async def test_a_stopping_sender_starts_no_provider_call_and_leaves_the_send_pending(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT))
    await h.when(granted(ENROLLMENT))
    h.sender._stopping = lambda: True  # SIGTERM arrived before the call started

    published = await h.send_due()

    assert (h.email.accepted, published) == ([], [])
    assert (h.row().status, h.row().send.attempts) == ("pending", 0)
    h.sender._stopping = lambda: False  # its successor sends it
    assert [type(m) for m in await h.send_due()] == [MessageSent]
