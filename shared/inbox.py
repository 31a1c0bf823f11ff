"""Inbox: the ids of messages a consumer has processed, written in the same transaction as
their effect, so a redelivered message changes nothing."""

from __future__ import annotations

from shared.db import DbConnection


async def claim(
    conn: DbConnection, *, consumer: str, message_id: str, message_type: str, outcome: str
) -> bool:
    """Record the message as processed; False when it was processed before."""
    row = await conn.fetchval(
        """INSERT INTO inbox (consumer, message_id, message_type, outcome)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
        consumer,
        message_id,
        message_type,
        outcome,
    )
    return row is not None


async def set_outcome(conn: DbConnection, *, consumer: str, message_id: str, outcome: str) -> None:
    await conn.execute(
        "UPDATE inbox SET outcome = $3 WHERE consumer = $1 AND message_id = $2",
        consumer,
        message_id,
        outcome,
    )
