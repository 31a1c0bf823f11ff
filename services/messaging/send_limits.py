"""Send limits: a rolling 24-hour cap on provider calls per sending mailbox or number.

Pure: the sender applies it inside its claim transaction. A sender (an account's mailbox
or number, ``Send.sender``) with a limit has a quota row that every claim touching it
locks (``SendLimitStore.lock_senders``), so replicas take its capacity one at a time;
each call handed to a provider writes a usage row at the claim's instant, and a claim
that did not start a call gives its row back. Under that lock ``allot`` decides, in due
order, which claimed sends go now and which wait, and until when the sender is full
(``blocked_until``): the claim skips a full sender's sends until then, so waiting costs
nothing, and nothing is dropped: a waiting send stays ``pending`` under its grant (if the
wait outlasts the grant's lease, ``message.deferred`` asks for a renewal, as for any
late send).

Due order holds across replicas: a claim gives capacity to none of its sends while an
older due send of the same sender waits outside it (another replica holds it, or it fell
beyond the claim's size); whoever holds the oldest goes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WINDOW = timedelta(hours=24)
"""The rolling window a limit counts over."""

SenderKey = tuple[str, str]
"""(account id, sender): one sending mailbox or number of one account."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Who may send how much per rolling 24 hours (0: no limit)."""

    default: int = 0
    per_account: Mapping[str, int] = field(default_factory=dict)
    per_sender: Mapping[SenderKey, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, default: int, limits: Mapping[str, int]) -> Limits:
        """From ``OFFRAMP_SEND_LIMIT_PER_DAY`` and ``OFFRAMP_SEND_LIMITS`` (keys
        ``<account>`` or ``<account>/<sender>``)."""
        per_account: dict[str, int] = {}
        per_sender: dict[SenderKey, int] = {}
        for key, limit in limits.items():
            account, _, sender = key.partition("/")
            if sender:
                per_sender[(account, sender)] = limit
            else:
                per_account[account] = limit
        return cls(default, per_account, per_sender)

    def of(self, key: SenderKey) -> int | None:
        """The sender's limit, the most specific setting first; None: unlimited."""
        limit = self.per_sender.get(key, self.per_account.get(key[0], self.default))
        return limit or None

    @property
    def any(self) -> bool:
        return bool(self.default or any(self.per_account.values()) or any(self.per_sender.values()))


NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class SenderUsage:
    """A locked sender's use of its capacity as its quota row's lock holder sees it."""

    used: Sequence[datetime]
    """When each provider call counted in the last 24 hours started, oldest first."""
    oldest_waiting: datetime | None = None
    """The due time of the oldest due send of this sender the claim does not hold."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A claimed send that may use its sender's capacity: its key, sender and due time."""

    key: object
    sender: SenderKey
    due_at: datetime
    lapsed: bool = False
    """Its grant's lease lapsed: "going" means asking for a renewal now (it holds the
    capacity within this claim, so nothing younger takes it, but uses none)."""


@dataclass(frozen=True, slots=True)
class Allotment:
    go: list[object]
    """Keys of the candidates that go now (each uses one unit of capacity)."""
    wait: list[object]
    """Keys of the candidates that wait (nothing changes for them)."""
    blocked_until: dict[SenderKey, datetime]
    """Senders full after this claim: when their next unit of capacity frees."""


@dataclass(frozen=True, slots=True)
class SenderQueue:
    """What one sender has waiting and has used (``offramp sends queue``, /metrics)."""

    account_id: str
    sender: str
    waiting: int
    """Pending sends (due now or later) not yet handed to a provider."""
    due: int
    """Of those, the ones already due."""
    oldest_due_at: datetime | None
    used_24h: int
    """Provider calls counted against its limit in the last 24 hours."""
    blocked_until: datetime | None


def next_free(used: Sequence[datetime], limit: int) -> datetime:
    """When a sender that used ``used`` (oldest first, at least ``limit`` of them within
    the window) may start one more call: when enough of them leave the window."""
    return used[len(used) - limit] + WINDOW


def allot(
    candidates: Sequence[Candidate],
    usage: Mapping[SenderKey, SenderUsage],
    limits: Limits,
    *,
    now: datetime,
) -> Allotment:
    """Which ``candidates`` (in due order per sender) go now, within each sender's limit.

    A candidate goes while its sender has capacity left, and only if no older due send of
    that sender waits outside this claim (it goes first, whoever holds it). A lapsed one
    that "goes" asks for its renewal; one that waits does not (it would only lapse again
    before capacity frees): a full sender's backlog is not deferred over and over."""
    go: list[object] = []
    wait: list[object] = []
    blocked: dict[SenderKey, datetime] = {}
    by_sender: dict[SenderKey, list[Candidate]] = {}
    for candidate in candidates:
        by_sender.setdefault(candidate.sender, []).append(candidate)
    for sender, mine in by_sender.items():
        limit = limits.of(sender)
        if limit is None:
            go.extend(c.key for c in mine)
            continue
        seen = usage.get(sender, SenderUsage(()))
        used = sorted(at for at in seen.used if at > now - WINDOW)
        held = 0
        for candidate in sorted(mine, key=lambda c: c.due_at):
            older_elsewhere = (
                seen.oldest_waiting is not None and seen.oldest_waiting < candidate.due_at
            )
            if len(used) + held < limit and not older_elsewhere:
                if candidate.lapsed:
                    held += 1
                else:
                    used.append(now)
                go.append(candidate.key)
            else:
                wait.append(candidate.key)
        if len(used) >= limit:
            blocked[sender] = next_free(used, limit)
    return Allotment(go, wait, blocked)
