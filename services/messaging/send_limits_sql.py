"""messaging's SQL of send limits (``send_limits``): the per-sender quota rows a claim
locks, the usage ledger, and the queue per sender. ``PostgresMessagingStore`` is built on
it. Each method costs one or two statements, however many senders it covers."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from services.messaging.domain import SendKey
from services.messaging.send_limits import WINDOW, SenderKey, SenderQueue, SenderUsage
from services.messaging.send_queue_sql import _AWAITS_RENEWAL
from shared.db import DbConnection


def _columns(keys: Collection[SenderKey]) -> tuple[list[str], list[str]]:
    ordered = sorted(keys)
    return [a for a, _ in ordered], [s for _, s in ordered]


class SendLimitSql:
    """The send limits' statements, on the transaction's connection."""

    _conn: DbConnection

    async def lock_senders(
        self, senders: Collection[SenderKey], *, claimed: Collection[SendKey], now: datetime
    ) -> dict[SenderKey, SenderUsage]:
        """Create and lock the quota rows of ``senders`` (in key order: no deadlock between
        replicas), forget their usage older than the window, and return what each used in
        it and the due time of its oldest due send outside ``claimed``."""
        if not senders:
            return {}
        accounts, names = _columns(senders)
        await self._conn.execute(
            """INSERT INTO send_quotas (account_id, sender)
               SELECT * FROM unnest($1::text[], $2::text[])
               ON CONFLICT DO NOTHING""",
            accounts,
            names,
        )
        # The whole result is read, so every row is locked (a lazily read CTE might not be).
        await self._conn.fetch(
            """SELECT q.account_id FROM send_quotas q
               JOIN unnest($1::text[], $2::text[]) AS u(account_id, sender)
                 ON q.account_id = u.account_id AND q.sender = u.sender
               ORDER BY q.account_id, q.sender
               FOR UPDATE OF q""",
            accounts,
            names,
        )
        await self._conn.execute(
            """DELETE FROM send_usage x USING unnest($1::text[], $2::text[]) AS u(a, s)
               WHERE x.account_id = u.a AND x.sender = u.s AND x.used_at <= $3""",
            accounts,
            names,
            now - WINDOW,
        )
        rows = await self._conn.fetch(
            f"""SELECT u.account_id, u.sender,
                       ARRAY(SELECT x.used_at FROM send_usage x
                             WHERE x.account_id = u.account_id AND x.sender = u.sender
                             ORDER BY x.used_at) AS used,
                       (SELECT min(s.next_attempt_at) FROM sends s
                        JOIN enrollments e
                          ON e.account_id = s.account_id AND e.enrollment_id = s.enrollment_id
                        WHERE s.account_id = u.account_id AND s.sender = u.sender
                          AND s.status = 'pending' AND s.next_attempt_at <= $3
                          AND NOT COALESCE({_AWAITS_RENEWAL.replace("$1", "$3")}, false)
                          AND (s.account_id, s.enrollment_id, s.step_index) NOT IN (
                              SELECT * FROM unnest($4::text[], $5::uuid[], $6::int[]))
                       ) AS oldest_waiting
                FROM unnest($1::text[], $2::text[]) AS u(account_id, sender)""",
            accounts,
            names,
            now,
            [k[0] for k in claimed],
            [k[1] for k in claimed],
            [k[2] for k in claimed],
        )
        return {
            (row["account_id"], row["sender"]): SenderUsage(
                tuple(row["used"]), row["oldest_waiting"]
            )
            for row in rows
        }

    async def use_capacity(
        self,
        used: Sequence[tuple[SenderKey, uuid.UUID]],
        blocked: Mapping[SenderKey, datetime],
        *,
        now: datetime,
    ) -> None:
        """Count the calls handed over (sender, attempt) at ``now``, and mark the senders
        that are full until when (their quota rows are locked by this transaction)."""
        if used:
            await self._conn.execute(
                """INSERT INTO send_usage (account_id, sender, attempt_id, used_at)
                   SELECT a, s, id, $4 FROM unnest($1::text[], $2::text[], $3::uuid[])
                        AS u(a, s, id)
                   ON CONFLICT DO NOTHING""",
                [k[0] for k, _ in used],
                [k[1] for k, _ in used],
                [attempt for _, attempt in used],
                now,
            )
        if blocked:
            await self._conn.execute(
                """UPDATE send_quotas q SET blocked_until = u.until
                   FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(a, s, until)
                   WHERE q.account_id = u.a AND q.sender = u.s""",
                [k[0] for k in blocked],
                [k[1] for k in blocked],
                list(blocked.values()),
            )

    async def give_back_capacity(self, attempts: Sequence[tuple[SenderKey, uuid.UUID]]) -> None:
        """Forget the usage of attempts that started no provider call; their senders are
        no longer full (the next claim finds out whether they are)."""
        if not attempts:
            return
        await self._conn.execute(
            """WITH given AS (
                   DELETE FROM send_usage x
                   USING unnest($1::text[], $2::text[], $3::uuid[]) AS u(a, s, id)
                   WHERE x.account_id = u.a AND x.sender = u.s AND x.attempt_id = u.id
                   RETURNING x.account_id, x.sender)
               UPDATE send_quotas q SET blocked_until = NULL
               FROM (SELECT DISTINCT account_id, sender FROM given) g
               WHERE q.account_id = g.account_id AND q.sender = g.sender""",
            [k[0] for k, _ in attempts],
            [k[1] for k, _ in attempts],
            [attempt for _, attempt in attempts],
        )

    async def sends_queue(self, *, now: datetime) -> list[SenderQueue]:
        """Every sender with sends waiting or usage counted, by account and sender."""
        return await sends_queue(self._conn, now=now)


async def sends_queue(conn: DbConnection, *, now: datetime) -> list[SenderQueue]:
    """Every sender with sends waiting or usage counted, by account and sender: what
    ``offramp sends queue`` and /metrics show (one statement)."""
    rows = await conn.fetch(
        """WITH waiting AS (
               SELECT account_id, sender, count(*) AS waiting,
                      count(*) FILTER (WHERE next_attempt_at <= $1) AS due,
                      min(next_attempt_at) FILTER (WHERE next_attempt_at <= $1) AS oldest
               FROM sends WHERE status = 'pending' AND sender IS NOT NULL
               GROUP BY account_id, sender),
           used AS (
               SELECT account_id, sender, count(*) AS used FROM send_usage
               WHERE used_at > $2 GROUP BY account_id, sender)
           SELECT k.account_id, k.sender, COALESCE(w.waiting, 0) AS waiting,
                  COALESCE(w.due, 0) AS due, w.oldest, COALESCE(u.used, 0) AS used,
                  CASE WHEN q.blocked_until > $1 THEN q.blocked_until END AS blocked_until
           FROM (SELECT account_id, sender FROM waiting
                 UNION SELECT account_id, sender FROM used) k
           LEFT JOIN waiting w USING (account_id, sender)
           LEFT JOIN used u USING (account_id, sender)
           LEFT JOIN send_quotas q USING (account_id, sender)
           ORDER BY k.account_id, k.sender""",
        now,
        now - WINDOW,
    )
    return [
        SenderQueue(
            account_id=row["account_id"],
            sender=row["sender"],
            waiting=row["waiting"],
            due=row["due"],
            oldest_due_at=row["oldest"],
            used_24h=row["used"],
            blocked_until=row["blocked_until"],
        )
        for row in rows
    ]
