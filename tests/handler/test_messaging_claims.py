"""messaging's sender on the fake store: a claim hands a send to an attempt with a lease
and the provider is called outside it; a send left ``sending`` by a crash is resolved once
the lease runs out (looked up where the provider can tell, else sent again and counted);
a stopping sender gives back what it did not start."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.messaging.domain import SendKey, Sent
from shared.contracts.events import CancelReason, MessageCancelled, MessageSent
from tests.support.builders.enrollment_events import T0, exited
from tests.support.builders.messaging_events import ENROLLMENT, enrollment_enrolled, granted
from tests.support.fakes.messaging_harness import (
    LookupProvider,
    MessagingHarness,
    messaging_harness,
)

pytestmark = pytest.mark.handler

NOW = T0


async def queued(h: MessagingHarness, *events: object) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    for event in events:
        await h.when(event)  # type: ignore[arg-type]


async def test_a_claim_hands_the_send_to_an_attempt_with_a_lease_then_records_it() -> None:
    h = messaging_harness()
    await queued(h)
    h.store.calls.clear()
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    # Claim transaction, then (provider call) the outcome transaction.
    claim = ["claim_due", "mark_cancelled", "defer", "mark_sending"]
    outcome = ["mark_sent", "record_failures", "mark_cancelled", "defer", "release"]
    assert h.store.calls == [*claim, *outcome]
    assert h.row().send.attempt_id is not None
    assert h.sender.lease == timedelta(seconds=2 * 10 + 30)


async def test_a_crash_during_the_call_leaves_the_send_sending_until_its_lease_runs_out() -> None:
    h = messaging_harness()
    await queued(h)
    h.email.crash = True
    assert await h.crash_while_sending() == []
    assert h.row().status == "sending"
    assert h.row().claimed_until == NOW + h.sender.lease
    assert await h.send_due(now=NOW + h.sender.lease - timedelta(seconds=1)) == []
    assert len(h.email.accepted) == 1


async def test_a_crashs_send_is_marked_sent_without_sending_when_the_provider_can_tell() -> None:
    h = messaging_harness(LookupProvider(crash=True))
    await queued(h)
    await h.crash_while_sending()

    [sent] = await h.send_due(now=NOW + h.sender.lease)

    assert isinstance(sent, MessageSent)
    assert sent.payload.recipient == "ada@example.com"
    assert (len(h.email.accepted), h.email.calls) == (1, 1)  # not sent twice
    assert (h.sender.stats.sends_resolved_after_crash, h.sender.stats.sends_resent_after_crash) == (
        1,
        0,
    )
    assert h.row().status == "sent"


async def test_a_crashs_send_the_provider_never_accepted_is_sent_once_not_counted() -> None:
    provider = LookupProvider(crash_before_accepting=True)
    h = messaging_harness(provider)
    await queued(h)
    await h.crash_while_sending()

    [sent] = await h.send_due(now=NOW + h.sender.lease)

    assert isinstance(sent, MessageSent)
    assert (len(provider.accepted), provider.lookups) == (1, 1)
    assert h.sender.stats.sends_resent_after_crash == 0


async def test_a_crashs_send_is_sent_again_and_counted_when_the_provider_cannot_tell() -> None:
    """SMTP: the same Message-ID again; a receiver that does not de-duplicate shows two."""
    h = messaging_harness()
    await queued(h)
    h.email.crash = True
    await h.crash_while_sending()

    [sent] = await h.send_due(now=NOW + h.sender.lease)

    assert isinstance(sent, MessageSent)
    assert [e.message_id for e in h.email.accepted] == [sent.payload.provider_message_id] * 2
    assert h.sender.stats.sends_resent_after_crash == 1


async def test_a_crashs_send_whose_enrollment_exited_meanwhile_is_cancelled_not_resent() -> None:
    h = messaging_harness()
    await queued(h)
    h.email.crash = True
    await h.crash_while_sending()
    await h.when(exited(ENROLLMENT))

    [cancelled] = await h.send_due(now=NOW + h.sender.lease)

    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.ENROLLMENT_EXITED
    assert (len(h.email.accepted), h.sender.stats.sends_resent_after_crash) == (1, 0)


async def test_a_lookup_that_fails_leaves_the_crashs_send_to_be_resolved_again() -> None:
    provider = LookupProvider(crash=True)
    h = messaging_harness(provider)
    await queued(h)
    await h.crash_while_sending()
    provider.lookup_fails = True

    assert await h.send_due(now=NOW + h.sender.lease) == []
    assert (h.row().status, h.row().send.attempts) == ("sending", 0)

    provider.lookup_fails = False
    [sent] = await h.send_due(now=NOW + h.sender.lease)
    assert isinstance(sent, MessageSent)
    assert len(provider.accepted) == 1


async def test_an_outcome_recorded_after_the_lease_was_taken_over_publishes_nothing() -> None:
    """A call slower than its lease: another round took the send over meanwhile."""
    h = messaging_harness()
    await queued(h)
    h.email.crash = True
    await h.crash_while_sending()
    stale = h.row().send
    [sent] = await h.send_due(now=NOW + h.sender.lease)  # taken over and sent
    assert isinstance(sent, MessageSent)
    assert await h.store.mark_sent([Sent(stale, "ada@example.com", NOW)]) == set()
    assert h.row().send.attempts == 1


async def test_a_stopping_sender_gives_back_a_crashs_send_still_to_be_resolved() -> None:
    h = messaging_harness()
    await queued(h)
    h.email.crash = True
    await h.crash_while_sending()
    h.sender._stopping = lambda: True

    assert await h.send_due(now=NOW + h.sender.lease) == []

    assert h.row().status == "sending"  # resolved as a crash's by the next claim
    h.sender._stopping = lambda: False
    await h.send_due(now=NOW + h.sender.lease)
    assert h.sender.stats.sends_resent_after_crash == 1


async def test_an_outcome_the_database_refused_is_recorded_again_not_sent_again() -> None:
    """A database outage between the call and its outcome: the outcome waits for it."""
    h = messaging_harness()
    await queued(h)
    mark_sent, refusals = h.store.mark_sent, [ConnectionResetError("database away")] * 2

    async def flaky(sent: list[Sent]) -> set[SendKey]:
        if refusals:
            raise refusals.pop()
        return await mark_sent(sent)

    h.store.mark_sent = flaky  # type: ignore[assignment,method-assign]
    [sent] = await h.send_due()

    assert isinstance(sent, MessageSent)
    assert (len(h.email.accepted), h.row().status) == (1, "sent")
