"""Send limits, pure: which claimed sends go within a sender's rolling 24-hour limit, in
due order, and until when a full sender waits (injected instants, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.messaging.send_limits import (
    WINDOW,
    Candidate,
    Limits,
    SenderUsage,
    allot,
    next_free,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # the night Europe changes to summer time
MAILBOX = ("acme", "sales@acme.test")
OTHER = ("acme", "support@acme.test")


def due(n: int, sender: tuple[str, str] = MAILBOX) -> Candidate:
    return Candidate(key=(sender, n), sender=sender, due_at=T0 + timedelta(minutes=n))


def test_the_most_specific_limit_wins_and_zero_means_none() -> None:
    limits = Limits.from_settings(1000, {"acme": 350, "acme/sales@acme.test": 0, "beta": 0})
    assert limits.of(MAILBOX) is None
    assert limits.of(OTHER) == 350
    assert limits.of(("beta", "x")) is None
    assert limits.of(("gamma", "x")) == 1000
    assert not Limits().any


def test_capacity_goes_to_the_oldest_due_sends_and_the_rest_wait() -> None:
    used = SenderUsage((T0 - timedelta(hours=23),))
    allotment = allot([due(3), due(1), due(2)], {MAILBOX: used}, Limits(default=3), now=T0)
    assert allotment.go == [due(1).key, due(2).key]
    assert allotment.wait == [due(3).key]
    # Full: the first unit frees when the call 23 hours ago leaves the window.
    assert allotment.blocked_until == {MAILBOX: T0 + timedelta(hours=1)}


def test_usage_older_than_24_hours_no_longer_counts() -> None:
    used = SenderUsage((T0 - WINDOW, T0 - WINDOW + timedelta(seconds=1)))
    allotment = allot([due(1), due(2)], {MAILBOX: used}, Limits(default=2), now=T0)
    assert allotment.go == [due(1).key]
    assert allotment.blocked_until == {MAILBOX: T0 + timedelta(seconds=1)}


def test_an_older_send_held_elsewhere_goes_first() -> None:
    elsewhere = SenderUsage((), oldest_waiting=T0)
    allotment = allot([due(1), due(2)], {MAILBOX: elsewhere}, Limits(default=10), now=T0)
    assert allotment.go == []
    assert allotment.blocked_until == {}  # not full: the holder of the older send goes next


def test_each_sender_has_its_own_capacity_and_unlimited_ones_all_go() -> None:
    limits = Limits.from_settings(0, {"acme/sales@acme.test": 1})
    allotment = allot(
        [due(1), due(2), due(1, OTHER), due(2, OTHER)], {MAILBOX: SenderUsage(())}, limits, now=T0
    )
    assert sorted(map(str, allotment.go)) == sorted(
        map(str, [due(1).key, due(1, OTHER).key, due(2, OTHER).key])
    )


def test_a_lapsed_send_in_reach_asks_for_renewal_and_holds_its_capacity_from_younger_ones() -> None:
    lapsed = Candidate((MAILBOX, 1), MAILBOX, T0 + timedelta(minutes=1), lapsed=True)
    further = Candidate((MAILBOX, 3), MAILBOX, T0 + timedelta(minutes=3), lapsed=True)
    allotment = allot([due(2), lapsed, further], {MAILBOX: SenderUsage(())}, Limits(2), now=T0)
    assert allotment.go == [lapsed.key, due(2).key]
    assert allotment.wait == [further.key]  # no renewal asked: no capacity for it now
    assert allotment.blocked_until == {}  # the renewal's unit is not used yet


def test_next_free_is_when_enough_calls_leave_the_window() -> None:
    used = [T0 + timedelta(minutes=m) for m in (0, 5, 10)]
    assert next_free(used, 3) == T0 + WINDOW
    assert next_free(used, 2) == T0 + timedelta(minutes=5) + WINDOW  # limit lowered


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 5),
    arrivals=st.lists(st.integers(0, 72 * 60), min_size=1, max_size=40),
    steps=st.lists(st.integers(1, 12 * 60), min_size=1, max_size=60),
)
def test_rounds_never_exceed_the_limit_in_any_24_hours_and_keep_due_order(
    limit: int, arrivals: list[int], steps: list[int]
) -> None:
    """Sender rounds at random instants over three days: whatever arrives when."""
    queue = [(T0 + timedelta(minutes=a), rank) for rank, a in enumerate(sorted(arrivals))]
    sent: list[tuple[datetime, int]] = []  # (when it went, its index in due order)
    blocked_until: datetime | None = None
    now = T0
    # Then a round a day, long enough for everything to go.
    for minutes in [*steps, *[24 * 60] * (len(queue) + 4)]:
        now += timedelta(minutes=minutes)
        if blocked_until is not None and now < blocked_until:
            continue  # the claim skips a full sender
        ready = [(at, i) for at, i in queue if at <= now and i not in {n for _, n in sent}]
        used = tuple(at for at, _ in sent if at > now - WINDOW)
        candidates = [Candidate(i, MAILBOX, at) for at, i in ready]
        allotment = allot(candidates, {MAILBOX: SenderUsage(used)}, Limits(default=limit), now=now)
        sent.extend((now, i) for i in allotment.go)  # type: ignore[misc]
        blocked_until = allotment.blocked_until.get(MAILBOX)
        for when, _ in sent:
            assert sum(when <= at < when + WINDOW for at, _ in sent) <= limit
    order = [i for _, i in sent]
    assert order == sorted(order)  # due order, nothing skipped ahead
    assert len(sent) == len(queue)  # nothing dropped: all went once capacity freed
