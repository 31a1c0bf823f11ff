"""messaging's sender under a rolling 24-hour send limit per sender (fake store, injected
clock): steps over the limit wait, pending under their grants, and go out in due order
when capacity frees; a wait longer than the grant's lease asks for a renewal."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from services.messaging.send_limits import Limits
from shared.contracts import Message
from shared.contracts.events import MessageDeferred, MessageSent
from tests.support.builders.enrollment_events import ACCOUNT, T0
from tests.support.builders.messaging_events import (
    DEFAULT_SENDER,
    enrollment_enrolled,
    granted,
    renewed,
)
from tests.support.fakes.messaging_harness import MessagingHarness, messaging_harness

pytestmark = pytest.mark.handler

DAY = timedelta(hours=24)
FAR = T0 + 3 * DAY


async def queued(
    h: MessagingHarness, count: int, *, lease_until: datetime = FAR
) -> list[uuid.UUID]:
    """``count`` enrollments whose first step is granted one second apart (due order)."""
    await h.ready()
    ids = sorted(uuid.uuid4() for _ in range(count))
    start = h.now
    for i, enrollment_id in enumerate(ids):
        h.now = start + timedelta(seconds=i)
        await h.when(
            enrollment_enrolled(enrollment_id),
            granted(enrollment_id, lease_until=lease_until),
        )
    h.now = start
    return ids


def sent_ids(published: Sequence[Message]) -> list[uuid.UUID]:
    return [m.payload.enrollment_id for m in published if isinstance(m, MessageSent)]


async def test_steps_over_the_limit_wait_and_go_out_in_due_order_when_capacity_frees() -> None:
    h = messaging_harness()
    h.sender.limits = Limits(default=2)
    first, second, third, fourth = await queued(h, 4)
    at = T0 + timedelta(seconds=10)

    assert sent_ids(await h.send_due(now=at)) == [first, second]
    assert h.sender.stats.waited_for_limit == 2
    assert h.row(enrollment_id=third).status == "pending"  # nothing dropped
    # Full until the first of the two leaves the rolling window; claims skip it meanwhile.
    [queue] = await h.store.sends_queue(now=at)
    assert (queue.sender, queue.waiting, queue.used_24h) == (DEFAULT_SENDER, 2, 2)
    assert queue.blocked_until == at + DAY
    h.store.calls.clear()
    assert await h.send_due(now=at + DAY - timedelta(seconds=1)) == []
    assert "lock_senders" not in h.store.calls

    assert sent_ids(await h.send_due(now=at + DAY)) == [third, fourth]


async def test_a_limit_per_sender_wins_over_the_accounts_and_others_are_not_held() -> None:
    h = messaging_harness()
    h.sender.limits = Limits.from_settings(5, {ACCOUNT: 3, f"{ACCOUNT}/{DEFAULT_SENDER}": 1})
    first, *_ = await queued(h, 3)
    assert sent_ids(await h.send_due(now=T0 + timedelta(seconds=10))) == [first]
    unlimited = messaging_harness()
    unlimited.sender.limits = Limits.from_settings(0, {"other-account": 1})
    ids = await queued(unlimited, 3)
    assert sent_ids(await unlimited.send_due(now=T0 + timedelta(seconds=10))) == ids


async def test_a_call_that_never_started_gives_its_capacity_back() -> None:
    h = messaging_harness()
    h.sender.limits = Limits(default=1)
    at = T0 + timedelta(seconds=10)
    (first,) = await queued(h, 1, lease_until=at + timedelta(seconds=5))
    second = uuid.uuid4()
    h.now = T0 + timedelta(seconds=1)
    await h.when(enrollment_enrolled(second), granted(second, lease_until=FAR))
    # The claim counted the first send, but its call could not start before its grant lapsed
    # (the round's calls come after the claim): it is deferred, and uncounted.
    published = await h.send_due(now=at, calls_at=at + timedelta(seconds=6))
    assert sent_ids(published) == []
    assert [m.payload.enrollment_id for m in published if isinstance(m, MessageDeferred)] == [first]
    assert h.store.usage[(ACCOUNT, DEFAULT_SENDER)] == {}
    assert sent_ids(await h.send_due(now=at + timedelta(seconds=7))) == [second]


async def test_a_wait_longer_than_the_grants_lease_asks_for_a_renewal_and_then_sends() -> None:
    h = messaging_harness()
    h.sender.limits = Limits(default=1)
    lease = T0 + timedelta(minutes=2)
    first, second = await queued(h, 2, lease_until=lease)
    at = T0 + timedelta(seconds=10)
    assert sent_ids(await h.send_due(now=at)) == [first]

    # Capacity frees a day later: the second send's lease lapsed long ago.
    published = await h.send_due(now=at + DAY)
    [deferred] = [m for m in published if isinstance(m, MessageDeferred)]
    assert deferred.payload.enrollment_id == second
    assert deferred.payload.lease_until == lease
    assert h.row(enrollment_id=second).status == "pending"  # still queued, under its grant

    # Enrollment renews the grant (message.deferred -> enrollment.step_granted renewal).
    h.now = at + DAY + timedelta(seconds=1)
    await h.when(renewed(second, lease_until=h.now + timedelta(minutes=2)))
    assert sent_ids(await h.send_due(now=h.now)) == [second]


async def test_only_the_lapsed_sends_capacity_can_take_ask_for_a_renewal() -> None:
    h = messaging_harness()
    h.sender.limits = Limits(default=1)
    lease = T0 + timedelta(minutes=2)
    first, second, third, fourth = await queued(h, 4, lease_until=lease)
    at = T0 + timedelta(seconds=10)
    assert sent_ids(await h.send_due(now=at)) == [first]

    # A day later one unit of capacity frees and every waiting grant has lapsed: only the
    # oldest asks for a renewal; the others wait quietly (they would lapse again).
    published = await h.send_due(now=at + DAY)
    deferred = [m.payload.enrollment_id for m in published if isinstance(m, MessageDeferred)]
    assert deferred == [second]
    assert h.row(enrollment_id=third).renewal_asked_for is None
    assert h.row(enrollment_id=fourth).renewal_asked_for is None

    h.now = at + DAY + timedelta(seconds=1)
    await h.when(renewed(second, lease_until=h.now + timedelta(minutes=2)))
    assert sent_ids(await h.send_due(now=h.now)) == [second]
    assert await h.send_due(now=h.now + timedelta(seconds=1)) == []  # full again
