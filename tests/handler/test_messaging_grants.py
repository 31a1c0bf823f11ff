"""messaging sends only what enrollment granted and did not revoke, and starts no provider
call once the grant's lease has lapsed (on its own clock): a lapsed grant is deferred
(``message.deferred``, once) until renewed; a revoke is answered by ``message.cancelled``
(``dispatch_revoked``) when no call had started, else by the outcome of the call under way.

Consumer cases run on the harness (as one batch and message by message); the sender's
transactions run on the store the batches went to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from services.messaging.providers import OutboundEmail
from shared.contracts import Message
from shared.contracts.events import (
    CancelReason,
    EnrollmentDispatchRevoked,
    MessageCancelled,
    MessageDeferred,
    MessageSent,
)
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_events import T0, exited
from tests.support.builders.messaging_events import (
    ENROLLMENT,
    LEASE,
    dispatch_of,
    enrollment_enrolled,
    granted,
    renewed,
    revoked,
    workflow_applied,
)
from tests.support.fakes.messaging_harness import FakeProvider, MessagingHarness, messaging_harness
from tests.support.harness import published_by

pytestmark = pytest.mark.handler

NOW = T0
LEASE_UNTIL = T0 + LEASE
LAPSED = LEASE_UNTIL + timedelta(seconds=1)
GRANT = dispatch_of(ENROLLMENT)


@pytest.fixture
def h() -> MessagingHarness:
    return messaging_harness()


async def granted_to(h: MessagingHarness) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))


# --- revoked grants ---


async def test_a_revoked_pending_send_is_cancelled_and_answered(h: MessagingHarness) -> None:
    await granted_to(h)
    revoke = revoked(ENROLLMENT)

    outcome = await h.when(revoke)

    [answer] = outcome.published
    assert isinstance(answer, MessageCancelled)
    assert (answer.payload.reason, answer.payload.dispatch_id) == (
        CancelReason.DISPATCH_REVOKED,
        GRANT,
    )
    assert (answer.payload.step_index, answer.payload.step_id) == (0, "intro")
    assert (h.row().status, h.row().cancel_reason) == ("cancelled", CancelReason.DISPATCH_REVOKED)
    assert await h.send_due() == []
    assert h.email.calls == 0


async def test_a_revoked_parked_step_is_cancelled_and_its_version_never_queues_it(
    h: MessagingHarness,
) -> None:
    await h.given(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))  # no version yet
    [answer] = (await h.when(revoked(ENROLLMENT))).published
    assert isinstance(answer, MessageCancelled)
    assert answer.payload.reason is CancelReason.DISPATCH_REVOKED
    assert h.parked().status == "cancelled"
    await h.when(workflow_applied())
    assert h.parked().status == "cancelled"
    assert await h.send_due() == []


async def test_a_revoke_of_a_step_never_queued_is_answered_all_the_same(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT))
    revoke = revoked(ENROLLMENT, step_index=1, step_id="nudge")

    [answer] = (await h.when(revoke)).published

    assert isinstance(answer, MessageCancelled)
    assert (answer.payload.reason, answer.payload.step_index) == (CancelReason.DISPATCH_REVOKED, 1)
    assert answer.payload.dispatch_id == revoke.payload.dispatch_id
    assert (answer.causation_id, answer.correlation_id) == (revoke.message_id, revoke.message_id)
    assert h.store.sends == {}


async def test_a_revoke_of_a_finished_send_publishes_nothing_more(h: MessagingHarness) -> None:
    await granted_to(h)
    [sent] = await h.send_due()  # already answered by this message.sent
    assert isinstance(sent, MessageSent)
    assert (await h.when(revoked(ENROLLMENT))).published == []
    assert h.row().status == "sent"


@dataclass
class GatedProvider(FakeProvider):
    """Holds each call until the test lets it go: a call in flight."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    go_on: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, email: OutboundEmail) -> None:
        self.entered.set()
        await self.go_on.wait()
        await super().send(email)


async def revoke_while_in_flight(h: MessagingHarness, provider: GatedProvider) -> list[Message]:
    """A sender round whose call is under way when the consumer applies the revoke: what
    the revoke published, then what the round did."""
    round_ = asyncio.create_task(h.send_due())
    await asyncio.wait_for(provider.entered.wait(), timeout=5)
    assert h.row().status == "sending"
    uow = UnitOfWork(None, h.store)
    await h.handlers[EnrollmentDispatchRevoked.TYPE](uow, [revoked(ENROLLMENT)], NOW)
    answered = published_by(uow)
    provider.go_on.set()
    return [*answered, *await asyncio.wait_for(round_, timeout=5)]


async def test_a_revoke_of_a_send_in_flight_is_answered_by_its_outcome_only() -> None:
    provider = GatedProvider()
    h = messaging_harness(provider)
    await granted_to(h)

    published = await revoke_while_in_flight(h, provider)

    [sent] = published  # the revoke itself published nothing
    assert isinstance(sent, MessageSent)
    assert sent.payload.dispatch_id == GRANT
    assert h.row().status == "sent"


async def test_a_send_in_flight_at_its_revoke_that_fails_for_now_is_cancelled_not_retried() -> None:
    """The revoke projected the enrollment as exited: the retry's claim cancels it, and
    that answers the revoke."""
    provider = GatedProvider(failures=1)
    h = messaging_harness(provider)
    await granted_to(h)

    assert await revoke_while_in_flight(h, provider) == []
    assert h.row().status == "pending"

    [answer] = await h.send_due(now=NOW + timedelta(seconds=2))
    assert isinstance(answer, MessageCancelled)
    assert answer.payload.reason is CancelReason.ENROLLMENT_EXITED
    assert (provider.calls, provider.accepted) == (1, [])


# --- leases ---


async def test_a_lapsed_lease_defers_the_send_once_and_it_waits_for_a_renewal(
    h: MessagingHarness,
) -> None:
    await granted_to(h)

    [deferred] = await h.send_due(now=LAPSED)

    assert isinstance(deferred, MessageDeferred)
    assert (deferred.payload.dispatch_id, deferred.payload.lease_until) == (GRANT, LEASE_UNTIL)
    assert (deferred.payload.next_attempt_at, deferred.payload.attempts) == (LAPSED, 0)
    assert "lease lapsed" in deferred.payload.reason
    assert (h.row().status, h.row().renewal_asked_for) == ("pending", LEASE_UNTIL)
    assert await h.send_due(now=LAPSED + timedelta(minutes=5)) == []  # not claimed again
    assert (h.email.calls, h.sender.stats.deferred) == (0, 1)


async def test_a_renewal_makes_a_deferred_send_sendable(h: MessagingHarness) -> None:
    await granted_to(h)
    await h.send_due(now=LAPSED)
    wakeups = h.store.wakeups

    await h.when(renewed(ENROLLMENT, lease_until=LAPSED + LEASE))

    assert h.row().send.lease_until == LAPSED + LEASE
    assert h.store.wakeups == wakeups + 1
    [sent] = await h.send_due(now=LAPSED)
    assert isinstance(sent, MessageSent)
    assert sent.payload.dispatch_id == GRANT
    assert len(h.email.accepted) == 1


async def test_a_renewal_with_an_earlier_lease_changes_nothing(h: MessagingHarness) -> None:
    await granted_to(h)
    await h.when(renewed(ENROLLMENT, lease_until=LEASE_UNTIL - timedelta(seconds=30)))
    assert h.row().send.lease_until == LEASE_UNTIL


async def test_no_call_starts_when_the_lease_lapses_between_claim_and_call(
    h: MessagingHarness,
) -> None:
    await granted_to(h)
    claimed_at = LEASE_UNTIL - timedelta(seconds=1)  # still valid at the claim

    [deferred] = await h.send_due(now=claimed_at, calls_at=LAPSED)

    assert isinstance(deferred, MessageDeferred)
    assert deferred.payload.lease_until == LEASE_UNTIL
    assert h.email.calls == 0
    assert h.sender.stats.calls_not_started_lease_lapsed == 1
    row = h.row()
    assert (row.status, row.send.attempt_id, row.renewal_asked_for) == (
        "pending",
        None,
        LEASE_UNTIL,
    )


async def test_a_deferred_send_is_cancelled_by_its_enrollments_exit(h: MessagingHarness) -> None:
    """Waiting for a renewal that will never come, it is not claimed again: the exit
    itself cancels it."""
    await granted_to(h)
    await h.send_due(now=LAPSED)
    [cancelled] = (await h.when(exited(ENROLLMENT))).published
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.ENROLLMENT_EXITED
    assert h.row().status == "cancelled"


async def test_a_revoke_of_a_deferred_send_cancels_it(h: MessagingHarness) -> None:
    await granted_to(h)
    await h.send_due(now=LAPSED)
    [answer] = (await h.when(revoked(ENROLLMENT))).published
    assert isinstance(answer, MessageCancelled)
    assert answer.payload.reason is CancelReason.DISPATCH_REVOKED


async def test_a_crashs_send_whose_lease_lapsed_is_deferred_not_sent_again() -> None:
    h = messaging_harness()
    await granted_to(h)
    h.email.crash = True
    await h.crash_while_sending()
    resolved_at = max(NOW + h.sender.lease, LAPSED)

    [deferred] = await h.send_due(now=resolved_at)

    assert isinstance(deferred, MessageDeferred)
    assert (len(h.email.accepted), h.sender.stats.sends_resent_after_crash) == (1, 0)
    assert h.row().status == "sending"  # still to be resolved as a crash's, once renewed
    await h.when(renewed(ENROLLMENT, lease_until=resolved_at + LEASE))
    [sent] = await h.send_due(now=resolved_at)
    assert isinstance(sent, MessageSent)
    assert h.sender.stats.sends_resent_after_crash == 1


# --- grants in one run, and parked grants ---


async def test_a_grant_and_its_renewal_in_one_run_queue_it_once_under_the_later_lease(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT))
    first = granted(ENROLLMENT)
    await h.when(first, renewed(ENROLLMENT, lease_until=LAPSED + LEASE))
    assert len(h.store.sends) == 1
    assert (h.row().send.cause_message_id, h.row().send.lease_until) == (
        first.message_id,
        LAPSED + LEASE,
    )


async def test_a_renewal_of_a_parked_step_is_the_lease_it_is_queued_under(
    h: MessagingHarness,
) -> None:
    await h.given(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    await h.when(renewed(ENROLLMENT, lease_until=LAPSED + LEASE))
    assert h.parked().parked.lease_until == LAPSED + LEASE
    await h.when(workflow_applied())
    assert (h.row().send.dispatch_id, h.row().send.lease_until) == (GRANT, LAPSED + LEASE)
    [sent] = await h.send_due(now=LAPSED)
    assert isinstance(sent, MessageSent)
