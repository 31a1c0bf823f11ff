"""Inbox: the ids of messages a consumer has processed, written in the same transaction as
their effect, so a redelivered message changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from shared.db import DbConnection


async def set_outcome(conn: DbConnection, *, consumer: str, message_id: str, outcome: str) -> None:
    await conn.execute(
        "UPDATE inbox SET outcome = $3 WHERE consumer = $1 AND message_id = $2",
        consumer,
        message_id,
        outcome,
    )


async def claim_many(
    conn: DbConnection, *, consumer: str, entries: Sequence[tuple[str, str, str]]
) -> set[str]:
    """Record many (message_id, type, outcome) at once; returns the ids that were new."""
    if not entries:
        return set()
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, message_id, message_type, outcome)
           SELECT $1, m, t, o FROM unnest($2::text[], $3::text[], $4::text[]) AS e(m, t, o)
           ON CONFLICT DO NOTHING RETURNING message_id""",
        consumer,
        [e[0] for e in entries],
        [e[1] for e in entries],
        [e[2] for e in entries],
    )
    return {row["message_id"] for row in rows}


async def prune(conn: DbConnection, *, older_than_days: float, limit: int = 10_000) -> int:
    """Forget processed ids older than the window in which Kafka could redeliver them."""
    result = await conn.execute(
        """DELETE FROM inbox WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM inbox
               WHERE processed_at < now() - make_interval(secs => $1)
               LIMIT $2))""",
        older_than_days * 86_400,
        limit,
    )
    return int(result.split()[-1])
