"""``RulesStore`` on PostgreSQL: the account's exclusivity setting and per-record locks
(a part of ``PostgresEnrollmentStore``)."""

from __future__ import annotations

from collections.abc import Sequence

from services.enrollment.rules_ports import RecordKey
from shared.contracts.enrollment_rules import Exclusivity
from shared.db import DbConnection

_RECORD_LOCK_SPACE = "offramp.enrollment.record"
"""Prefix of the advisory lock keys of ``lock_records``, apart from any other lock."""


class PostgresRulesStore:
    _conn: DbConnection

    async def account_exclusivity(self, account_ids: Sequence[str]) -> dict[str, Exclusivity]:
        wanted = sorted(set(account_ids))
        if not wanted:
            return {}
        rows = await self._conn.fetch(
            """SELECT account_id, exclusivity FROM account_exclusivity
               WHERE account_id = ANY($1::text[])""",
            wanted,
        )
        found = {r["account_id"]: Exclusivity(r["exclusivity"]) for r in rows}
        return {a: found.get(a, Exclusivity.NO_LIMIT) for a in wanted}

    async def set_account_exclusivity(self, account_id: str, exclusivity: Exclusivity) -> None:
        await self._conn.execute(
            """INSERT INTO account_exclusivity (account_id, exclusivity) VALUES ($1, $2)
               ON CONFLICT (account_id) DO UPDATE
                   SET exclusivity = EXCLUDED.exclusivity, updated_at = now()""",
            account_id,
            exclusivity.value,
        )

    async def lock_records(self, keys: Sequence[RecordKey]) -> None:
        # Always in one order: two runs never wait for each other in a cycle.
        wanted = sorted({(a, r.type.value, r.id) for a, r in keys})
        if not wanted:
            return
        await self._conn.execute(
            """SELECT pg_advisory_xact_lock(
                   hashtextextended($1 || '/' || k.a || '/' || k.t || '/' || k.r, 0))
               FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k(a, t, r, n)
               ORDER BY k.n""",
            _RECORD_LOCK_SPACE,
            [k[0] for k in wanted],
            [k[1] for k in wanted],
            [k[2] for k in wanted],
        )
