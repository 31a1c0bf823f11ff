"""The SMS balance's decisions (``sms_balance``): credits, reservations, debits, refunds,
over any order of events, duplicates and re-schedules included."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.messaging import sms_balance
from services.messaging.sms_balance import Book, Kind, Movement, State
from shared.contracts.sms_balance import RefundReason

ACCOUNT = "acct_1"
AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
ENROLLMENTS = [uuid.UUID(int=n) for n in range(1, 4)]


def key(enrollment: int, step: int) -> sms_balance.StepKey:
    return (ACCOUNT, ENROLLMENTS[enrollment], step)


def saved(book: Book, ledger: list[Movement]) -> None:
    """What ``save_sms_books`` keeps: the run's movements join the ledger."""
    ledger.extend(book.movements)
    book.movements.clear()
    book.changed.clear()


def test_a_credit_then_a_schedule_reserves_the_steps_segments() -> None:
    book = Book(ACCOUNT)
    sms_balance.credit(book, "c1", 10, AT)
    reservation = sms_balance.reserve(book, key(0, 0), 3, AT)
    assert reservation is not None
    assert (reservation.state, book.balance) == (State.RESERVED, 7)
    assert [m.kind for m in book.movements] == [Kind.CREDIT, Kind.RESERVE]


def test_a_step_the_balance_cannot_cover_is_short_and_moves_nothing() -> None:
    book = Book(ACCOUNT, balance=2)
    reservation = sms_balance.reserve(book, key(0, 0), 3, AT)
    assert reservation is not None
    assert (reservation.state, book.balance, book.movements) == (State.SHORT, 2, [])


def test_a_credit_reserves_short_steps_oldest_first_while_it_covers_them() -> None:
    book = Book(ACCOUNT)
    sms_balance.reserve(book, key(0, 0), 4, AT)
    sms_balance.reserve(book, key(1, 0), 2, AT.replace(hour=13))
    sms_balance.reserve(book, key(2, 0), 1, AT.replace(hour=14))
    sms_balance.credit(book, "c1", 5, AT)
    states = [book.reservations[key(n, 0)].state for n in range(3)]
    assert states == [State.RESERVED, State.SHORT, State.RESERVED]
    assert book.balance == 0


def test_a_credit_id_applied_twice_credits_once() -> None:
    book = Book(ACCOUNT)
    assert sms_balance.credit(book, "c1", 5, AT) is not None
    assert sms_balance.credit(book, "c1", 5, AT) is None
    assert book.balance == 5


def test_an_exit_arriving_twice_refunds_once() -> None:
    book = Book(ACCOUNT, balance=10)
    sms_balance.reserve(book, key(0, 0), 3, AT)
    first = sms_balance.refund(book, key(0, 0), AT, RefundReason.ENROLLMENT_EXITED)
    again = sms_balance.refund(book, key(0, 0), AT, RefundReason.ENROLLMENT_EXITED)
    assert first is not None
    assert (first.segments, first.balance, again, book.balance) == (3, 10, None, 10)


def test_a_sent_step_is_debited_once_and_never_refunded() -> None:
    book = Book(ACCOUNT, balance=10)
    sms_balance.reserve(book, key(0, 0), 3, AT)
    assert sms_balance.debit(book, key(0, 0), AT) is not None
    assert sms_balance.debit(book, key(0, 0), AT) is None
    assert sms_balance.refund(book, key(0, 0), AT, RefundReason.ENROLLMENT_EXITED) is None
    assert book.balance == 7


def test_a_step_rescheduled_after_its_refund_is_reserved_again_under_the_next_generation() -> None:
    book = Book(ACCOUNT, balance=10)
    sms_balance.reserve(book, key(0, 0), 3, AT)
    sms_balance.refund(book, key(0, 0), AT, RefundReason.ENROLLMENT_PAUSED)
    again = sms_balance.reserve(book, key(0, 0), 3, AT)
    assert again is not None
    assert (again.generation, again.state, book.balance) == (2, State.RESERVED, 7)


OPS = st.one_of(
    st.tuples(st.just("credit"), st.integers(0, 3), st.integers(1, 6)),
    st.tuples(st.just("schedule"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 4)),
    st.tuples(st.just("send"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("fail"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("pause"), st.integers(0, 2)),
    st.tuples(st.just("exit"), st.integers(0, 2)),
    st.tuples(st.just("duplicate"), st.integers(0, 1000)),
)


def _apply(book: Book, op: tuple[object, ...], exited: set[int], at: datetime) -> None:
    match op:
        case ("credit", int(credit), int(count)):
            sms_balance.credit(book, f"c{credit}", count, at)
        case ("schedule", int(e), int(step), int(count)):
            if e not in exited:  # the handler reserves nothing for an ended enrollment
                sms_balance.reserve(book, key(e, step), count, at)
        case ("send", int(e), int(step)):
            # The claim lets only a reserved step go out.
            if book.reservations.get(key(e, step)) is not None:
                sms_balance.debit(book, key(e, step), at)
        case ("fail", int(e), int(step)):
            sms_balance.refund(book, key(e, step), at, RefundReason.SEND_FAILED)
        case ("pause", int(e)) | ("exit", int(e)):
            reason = RefundReason.ENROLLMENT_PAUSED
            if op[0] == "exit":
                exited.add(e)
                reason = RefundReason.ENROLLMENT_EXITED
            for open_key in sms_balance.open_steps(book, (ACCOUNT, ENROLLMENTS[e])):
                sms_balance.refund(book, open_key, at, reason)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.lists(OPS, max_size=40))
def test_any_order_of_events_keeps_the_balance_the_sum_of_its_movements(
    ops: list[tuple[object, ...]],
) -> None:
    book, exited = Book(ACCOUNT), set[int]()
    ledger: list[Movement] = []
    done: list[tuple[object, ...]] = []
    for op in ops:
        if op[0] == "duplicate":
            if not done:
                continue
            op = done[int(str(op[1])) % len(done)]  # noqa: PLW2901 - replay an earlier one
        _apply(book, op, exited, AT)
        done.append(op)
        saved(book, ledger)
        assert book.balance == sum(m.delta for m in ledger)
        assert book.balance >= 0
    per_generation = Counter(
        (m.enrollment_id, m.step_index, m.generation, m.kind)
        for m in ledger
        if m.kind != Kind.CREDIT
    )
    assert all(n == 1 for n in per_generation.values()), per_generation
    ends = Counter(
        (m.enrollment_id, m.step_index, m.generation)
        for m in ledger
        if m.kind in (Kind.DEBIT, Kind.REFUND)
    )
    assert all(n == 1 for n in ends.values()), "a reservation debited or refunded twice"
    credits = Counter(m.credit_id for m in ledger if m.kind == Kind.CREDIT)
    assert all(n == 1 for n in credits.values())
    held = sum(r.segments for r in book.reservations.values() if r.state is State.RESERVED)
    spent = sum(m.segments for m in ledger if m.kind == Kind.DEBIT)
    credited = sum(m.delta for m in ledger if m.kind == Kind.CREDIT)
    assert book.balance + held + spent == credited
    for e in exited:
        assert sms_balance.open_steps(book, (ACCOUNT, ENROLLMENTS[e])) == []
