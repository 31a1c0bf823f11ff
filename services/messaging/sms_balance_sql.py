"""messaging's SQL of the SMS balance (``sms_balance``): lock and read the books of a
run's accounts, save what the run moved. ``PostgresMessagingStore`` is built on it.
Each method costs one to three statements, however many accounts and steps it covers."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from services.messaging.projection import EnrollmentKey
from services.messaging.sms_balance import Book, Reservation, State, StepKey
from shared.contracts.sms_balance import WhenShort
from shared.db import DbConnection


class SmsBalanceSql:
    """The balance's statements, on the transaction's connection."""

    _conn: DbConnection

    async def meter_accounts(self, accounts: Collection[str]) -> None:
        """Give ``accounts`` a balance (0) if they have none: they are metered from now."""
        if accounts:
            await self._conn.execute(
                """INSERT INTO sms_balances (account_id)
                   SELECT * FROM unnest($1::text[]) ON CONFLICT DO NOTHING""",
                sorted(accounts),
            )

    async def sms_books(
        self,
        accounts: Collection[str],
        *,
        steps: Collection[StepKey] = (),
        enrollments: Collection[EnrollmentKey] = (),
        credit_ids: Collection[tuple[str, str]] = (),
        short: bool = False,
    ) -> dict[str, Book]:
        """Lock the balances of the metered ones of ``accounts`` (in key order: no
        deadlock between replicas) and read the reservations of ``steps``, of
        ``enrollments``, and (``short``) the accounts' short ones, and which of
        ``credit_ids`` were applied."""
        if not accounts:
            return {}
        rows = await self._conn.fetch(
            """SELECT account_id, balance, when_short FROM sms_balances
               WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE""",
            sorted(accounts),
        )
        books = {
            r["account_id"]: Book(r["account_id"], r["balance"], WhenShort(r["when_short"]))
            for r in rows
        }
        if not books:
            return {}
        wanted_steps = [k for k in steps if k[0] in books]
        wanted_enrollments = [k for k in enrollments if k[0] in books]
        rows = await self._conn.fetch(
            """SELECT r.* FROM sms_reservations r
               WHERE (r.account_id, r.enrollment_id, r.step_index) IN (
                         SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[]))
                  OR (r.account_id, r.enrollment_id) IN (
                         SELECT * FROM unnest($4::text[], $5::uuid[]))
                  OR (r.state = 'short' AND r.account_id = ANY($6::text[]))""",
            [k[0] for k in wanted_steps],
            [k[1] for k in wanted_steps],
            [k[2] for k in wanted_steps],
            [k[0] for k in wanted_enrollments],
            [k[1] for k in wanted_enrollments],
            sorted(books) if short else [],
        )
        for r in rows:
            key = (r["account_id"], r["enrollment_id"], r["step_index"])
            books[key[0]].reservations[key] = Reservation(
                key, r["segments"], State(r["state"]), r["generation"], r["since"]
            )
        credits = [c for c in credit_ids if c[0] in books]
        if credits:
            rows = await self._conn.fetch(
                """SELECT account_id, credit_id FROM sms_ledger
                   WHERE kind = 'credit' AND (account_id, credit_id) IN (
                         SELECT * FROM unnest($1::text[], $2::text[]))""",
                [c[0] for c in credits],
                [c[1] for c in credits],
            )
            for r in rows:
                books[r["account_id"]].credits.add(r["credit_id"])
        return books

    async def save_sms_books(self, books: Sequence[Book]) -> None:
        """Save the balances, reservations and movements the run changed."""
        dirty = [b for b in books if b.dirty]
        if not dirty:
            return
        await self._conn.execute(
            """UPDATE sms_balances b SET balance = u.balance, when_short = u.when_short
               FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(account_id, balance,
                                                                     when_short)
               WHERE b.account_id = u.account_id""",
            [b.account_id for b in dirty],
            [b.balance for b in dirty],
            [b.when_short.value for b in dirty],
        )
        changed = [b.reservations[k] for b in dirty for k in sorted(b.changed)]
        if changed:
            await self._conn.execute(
                """INSERT INTO sms_reservations AS r
                       (account_id, enrollment_id, step_index, segments, state, generation,
                        since)
                   SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::int[],
                                        $5::text[], $6::int[], $7::timestamptz[])
                   ON CONFLICT (account_id, enrollment_id, step_index) DO UPDATE
                   SET segments = excluded.segments, state = excluded.state,
                       generation = excluded.generation, since = excluded.since""",
                [r.key[0] for r in changed],
                [r.key[1] for r in changed],
                [r.key[2] for r in changed],
                [r.segments for r in changed],
                [r.state.value for r in changed],
                [r.generation for r in changed],
                [r.since for r in changed],
            )
        moves = [m for b in dirty for m in b.movements]
        if moves:
            await self._conn.execute(
                """INSERT INTO sms_ledger (account_id, kind, segments, delta, balance_after,
                                           enrollment_id, step_index, generation, credit_id,
                                           reason, at)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[],
                                        $5::bigint[], $6::uuid[], $7::int[], $8::int[],
                                        $9::text[], $10::text[], $11::timestamptz[])""",
                [m.account_id for m in moves],
                [m.kind.value for m in moves],
                [m.segments for m in moves],
                [m.delta for m in moves],
                [m.balance for m in moves],
                [m.enrollment_id for m in moves],
                [m.step_index for m in moves],
                [m.generation for m in moves],
                [m.credit_id for m in moves],
                [m.reason.value if m.reason else None for m in moves],
                [m.at for m in moves],
            )
        for book in dirty:
            book.movements.clear()
            book.changed.clear()
            book.dirty = False

    async def sms_ledger_sum(self, account_id: str) -> tuple[int, int]:
        """(the balance, the sum of the ledger's deltas) of one account: equal, always."""
        row = await self._conn.fetchrow(
            """SELECT COALESCE((SELECT balance FROM sms_balances WHERE account_id = $1), 0)
                          AS balance,
                      COALESCE((SELECT sum(delta) FROM sms_ledger WHERE account_id = $1), 0)
                          AS total""",
            account_id,
        )
        if row is None:  # pragma: no cover - one row always comes back
            return 0, 0
        return int(row["balance"]), int(row["total"])
