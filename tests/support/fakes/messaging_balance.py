"""The SMS balance of ``FakeMessagingStore`` in memory, with the SQL's semantics
(``sms_balance_sql``; no locking: the fake runs one transaction at a time)."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence

from services.messaging.projection import EnrollmentKey
from services.messaging.sms_balance import Book, Movement, Reservation, State, StepKey
from shared.contracts.sms_balance import WhenShort


class FakeSmsBalance:
    """``sms_balances``, ``sms_reservations`` and ``sms_ledger`` as dicts and a list."""

    balances: dict[str, tuple[int, WhenShort]]
    reservations: dict[StepKey, Reservation]
    ledger: list[Movement]
    calls: list[str]

    def balance_snapshot(self) -> object:
        return (
            dict(self.balances),
            copy.deepcopy(self.reservations),
            [(m.kind, m.account_id, m.enrollment_id, m.step_index, m.delta) for m in self.ledger],
        )

    def reservation_state(self, key: StepKey) -> State | None:
        """The state of a step's reservation (for the claim's filter)."""
        r = self.reservations.get(key)
        return r.state if r is not None else None

    async def meter_accounts(self, accounts: Collection[str]) -> None:
        self.calls.append("meter_accounts")
        for account in accounts:
            self.balances.setdefault(account, (0, WhenShort.WAIT))

    async def sms_books(
        self,
        accounts: Collection[str],
        *,
        steps: Collection[StepKey] = (),
        enrollments: Collection[EnrollmentKey] = (),
        credit_ids: Collection[tuple[str, str]] = (),
        short: bool = False,
    ) -> dict[str, Book]:
        self.calls.append("sms_books")
        books = {a: Book(a, *self.balances[a]) for a in sorted(accounts) if a in self.balances}
        wanted_steps, wanted_enrollments = set(steps), set(enrollments)
        for key, r in self.reservations.items():
            if key[0] in books and (
                key in wanted_steps
                or key[:2] in wanted_enrollments
                or (short and r.state is State.SHORT)
            ):
                books[key[0]].reservations[key] = copy.copy(r)
        applied = {(m.account_id, m.credit_id) for m in self.ledger if m.credit_id is not None}
        for account, credit_id in credit_ids:
            if account in books and (account, credit_id) in applied:
                books[account].credits.add(credit_id)
        return books

    async def save_sms_books(self, books: Sequence[Book]) -> None:
        self.calls.append("save_sms_books")
        for book in books:
            if not book.dirty:
                continue
            self.balances[book.account_id] = (book.balance, book.when_short)
            for key in book.changed:
                self.reservations[key] = copy.copy(book.reservations[key])
            self.ledger.extend(book.movements)
            book.movements.clear()
            book.changed.clear()
            book.dirty = False

    async def sms_ledger_sum(self, account_id: str) -> tuple[int, int]:
        balance = self.balances.get(account_id, (0, WhenShort.WAIT))[0]
        return balance, sum(m.delta for m in self.ledger if m.account_id == account_id)
