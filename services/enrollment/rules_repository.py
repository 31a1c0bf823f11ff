"""``RulesStore`` on PostgreSQL: the account's exclusivity setting and per-record locks
(a part of ``PostgresEnrollmentStore``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.enrollment.rules_ports import RecordKey, WorkflowKey
from shared.contracts.commands import Enroll
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

    async def enrolled_since(
        self, keys: Sequence[tuple[str, str, datetime]]
    ) -> dict[WorkflowKey, int]:
        if not keys:
            return {}
        rows = await self._conn.fetch(
            """SELECT k.a, k.w, (SELECT count(*) FROM enrollments e
                                 WHERE e.account_id = k.a AND e.workflow_id = k.w
                                   AND e.enrolled_at >= k.since) AS n
               FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(a, w, since)""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(r["a"], r["w"]): r["n"] for r in rows}

    async def waiting_for_cap(self, keys: Sequence[WorkflowKey]) -> set[WorkflowKey]:
        if not keys:
            return set()
        rows = await self._conn.fetch(
            """SELECT DISTINCT p.account_id, p.workflow_id
               FROM parked_enrolls p JOIN unnest($1::text[], $2::text[]) AS k(a, w)
                 ON p.account_id = k.a AND p.workflow_id = k.w
               WHERE p.release_at IS NOT NULL""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["account_id"], r["workflow_id"]) for r in rows}

    async def take_released(self, *, now: datetime, limit: int) -> list[tuple[Enroll, datetime]]:
        rows = await self._conn.fetch(
            f"""DELETE FROM parked_enrolls p
                USING (SELECT account_id, message_id FROM parked_enrolls
                       WHERE release_at <= $1
                       ORDER BY parked_at, seq
                       LIMIT {int(limit)}
                       FOR UPDATE SKIP LOCKED) AS due
                WHERE p.account_id = due.account_id AND p.message_id = due.message_id
                RETURNING p.seq, p.parked_at, p.command""",
            now,
        )
        return [
            (Enroll.model_validate_json(r["command"]), r["parked_at"])
            for r in sorted(rows, key=lambda r: (r["parked_at"], r["seq"]))
        ]
