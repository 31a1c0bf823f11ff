"""The per-account SMS balance, in segments, and its ledger: pure decisions, no I/O.

An account is *metered* from its first ``sms_balance.credit`` (or ``.configure``) on;
before that its SMS steps are not counted. For a metered account every movement is a
ledger row, and the balance is always the sum of their ``delta``:

- ``credit``  (+n): segments added, once per credit id;
- ``reserve`` (-n): a scheduled SMS step's segments set aside, once per reservation;
- ``debit``   (0):  the step was sent: its reservation is spent (the segments had already
  left the balance when reserved);
- ``refund``  (+n): the reservation of a step that will not be sent (an exit, completion,
  pause, cancelled or failed send) given back.

A reservation is keyed by (account, enrollment, step index) and a ``generation``: a step
scheduled again after its refund (a resume re-schedules it) is reserved anew under the
next generation. Each generation is reserved at most once and then debited or refunded
at most once (the ledger's unique keys say so too), so a duplicate event never moves the
balance twice. A step the balance cannot cover is ``short``: nothing moves, it is not
sent, and the next credit reserves short steps oldest first as far as it covers them.
The balance never goes negative.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from services.messaging import segments
from shared.contracts.sms_balance import RefundReason, WhenShort

StepKey = tuple[str, uuid.UUID, int]
"""(account id, enrollment id, step index): one step of one enrollment."""

EXHAUSTED = "SMS balance exhausted"
"""The reason of ``message.failed`` for a step of an account set to fail when short."""


class Kind(StrEnum):
    CREDIT = "credit"
    RESERVE = "reserve"
    DEBIT = "debit"
    REFUND = "refund"


class State(StrEnum):
    RESERVED = "reserved"
    SHORT = "short"
    DEBITED = "debited"
    REFUNDED = "refunded"

    @property
    def open(self) -> bool:
        """Neither spent nor given back: the step may still be sent."""
        return self in (State.RESERVED, State.SHORT)


@dataclass(frozen=True, slots=True)
class Movement:
    account_id: str
    kind: Kind
    segments: int
    delta: int
    at: datetime
    enrollment_id: uuid.UUID | None = None
    step_index: int | None = None
    generation: int | None = None
    credit_id: str | None = None
    reason: RefundReason | None = None
    balance: int = 0
    """The account's balance right after this movement."""


@dataclass(slots=True)
class Reservation:
    key: StepKey
    segments: int
    state: State
    generation: int
    since: datetime


@dataclass(slots=True)
class Book:
    """One metered account as a run needs it: its balance row and the reservations read."""

    account_id: str
    balance: int = 0
    when_short: WhenShort = WhenShort.WAIT
    reservations: dict[StepKey, Reservation] = field(default_factory=dict)
    credits: set[str] = field(default_factory=set)
    """The credit ids among those the run names that were applied already."""
    movements: list[Movement] = field(default_factory=list)
    """What this run moved (to be saved)."""
    changed: set[StepKey] = field(default_factory=set)
    """Reservations this run created or changed (to be saved)."""
    dirty: bool = False

    def _move(self, movement: Movement) -> Movement:
        self.balance += movement.delta
        self.dirty = True
        movement = replace(movement, balance=self.balance)
        self.movements.append(movement)
        return movement

    def _step_move(
        self, kind: Kind, r: Reservation, delta: int, at: datetime, reason: RefundReason | None
    ) -> Movement:
        return self._move(
            Movement(
                self.account_id,
                kind,
                r.segments,
                delta,
                at,
                enrollment_id=r.key[1],
                step_index=r.key[2],
                generation=r.generation,
                reason=reason,
            )
        )


def sms_segments(body: str) -> int:
    """Segments a rendered SMS body costs (``segments.count``)."""
    return segments.count(body).segments


def credit(book: Book, credit_id: str, count: int, at: datetime) -> Movement | None:
    """Add ``count`` segments once per ``credit_id``, then reserve short steps, oldest
    first, while the balance covers them."""
    if credit_id in book.credits:
        return None
    book.credits.add(credit_id)
    movement = book._move(
        Movement(book.account_id, Kind.CREDIT, count, count, at, credit_id=credit_id)
    )
    waiting = sorted(
        (r for r in book.reservations.values() if r.state is State.SHORT),
        key=lambda r: (r.since, str(r.key[1]), r.key[2]),
    )
    for r in waiting:
        if r.segments <= book.balance:
            r.state = State.RESERVED
            book.changed.add(r.key)
            book._step_move(Kind.RESERVE, r, -r.segments, at, None)
    return movement


def reserve(book: Book, key: StepKey, count: int, at: datetime) -> Reservation | None:
    """Set ``count`` segments aside for a scheduled step (``short`` when the balance cannot
    cover them). A step already reserved, short or sent is left alone (a duplicate); one
    refunded is reserved anew, under the next generation."""
    current = book.reservations.get(key)
    if current is not None and current.state is not State.REFUNDED:
        return None
    generation = 1 if current is None else current.generation + 1
    covered = count <= book.balance
    r = Reservation(key, count, State.RESERVED if covered else State.SHORT, generation, at)
    book.reservations[key] = r
    book.changed.add(key)
    book.dirty = True
    if covered:
        book._step_move(Kind.RESERVE, r, -count, at, None)
    return r


def debit(book: Book, key: StepKey, at: datetime) -> Movement | None:
    """The step was sent: its reservation is spent (once)."""
    r = book.reservations.get(key)
    if r is None or r.state is not State.RESERVED:
        return None
    r.state = State.DEBITED
    book.changed.add(key)
    return book._step_move(Kind.DEBIT, r, 0, at, None)


def refund(book: Book, key: StepKey, at: datetime, reason: RefundReason) -> Movement | None:
    """The step will not be sent (now): give its reserved segments back (once). A short
    step is only closed: nothing had left the balance for it."""
    r = book.reservations.get(key)
    if r is None or not r.state.open:
        return None
    was = r.state
    r.state = State.REFUNDED
    book.changed.add(key)
    book.dirty = True
    if was is State.SHORT:
        return None
    return book._step_move(Kind.REFUND, r, r.segments, at, reason)


def open_steps(book: Book, enrollment: tuple[str, uuid.UUID]) -> list[StepKey]:
    """The enrollment's reservations still open, in step order."""
    return sorted(k for k, r in book.reservations.items() if k[:2] == enrollment and r.state.open)
