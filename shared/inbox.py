"""Inbox: the ids of messages a consumer has processed, written in the same transaction as
their effect, so a redelivered message changes nothing.

Ids are scoped by account: two accounts may use the same message id (upstream connectors
often derive ids from their own per-tenant ids) and neither swallows the other's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.db import DbConnection

InboxKey = tuple[str, str]
"""(account id, message id): what makes a message the same message."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    account_id: str
    message_id: str
    message_type: str
    outcome: str
    """applied | unknown_type | dead_lettered"""
    replay_of: str | None = None
    """The dead letter this message replays: it is applied even if its id was
    dead-lettered before (an id already applied stays a duplicate)."""

    @property
    def key(self) -> InboxKey:
        return (self.account_id, self.message_id)


async def set_outcome(
    conn: DbConnection, *, consumer: str, account_id: str, message_id: str, outcome: str
) -> None:
    await conn.execute(
        """UPDATE inbox SET outcome = $4
           WHERE consumer = $1 AND account_id = $2 AND message_id = $3""",
        consumer,
        account_id,
        message_id,
        outcome,
    )


async def claim_many(
    conn: DbConnection, *, consumer: str, entries: Sequence[InboxEntry]
) -> set[InboxKey]:
    """Record many entries at once; returns the keys that were new (or replayed)."""
    if not entries:
        return set()
    # One row per key (a key twice in one upsert would be "affected a second time"); a
    # replay among copies of one message decides for all of them.
    unique: dict[InboxKey, InboxEntry] = {}
    for entry in entries:
        if entry.key not in unique or (entry.replay_of and not unique[entry.key].replay_of):
            unique[entry.key] = entry
    entries = list(unique.values())
    rows = await conn.fetch(
        """INSERT INTO inbox
               (consumer, account_id, message_id, message_type, outcome, replayed_from)
           SELECT $1, a, m, t, o, r
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
               AS e(a, m, t, o, r)
           -- An id processed before ids were keyed by account (empty once pruned).
           WHERE NOT EXISTS (
               SELECT 1 FROM inbox_legacy l WHERE l.consumer = $1 AND l.message_id = e.m)
           ON CONFLICT (consumer, account_id, message_id) DO UPDATE
               SET outcome = EXCLUDED.outcome, replayed_from = EXCLUDED.replayed_from,
                   processed_at = now()
               WHERE inbox.outcome = 'dead_lettered' AND EXCLUDED.replayed_from IS NOT NULL
           RETURNING account_id, message_id""",
        consumer,
        [e.account_id for e in entries],
        [e.message_id for e in entries],
        [e.message_type for e in entries],
        [e.outcome for e in entries],
        [e.replay_of for e in entries],
    )
    return {(row["account_id"], row["message_id"]) for row in rows}


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
    await conn.execute(
        "DELETE FROM inbox_legacy WHERE processed_at < now() - make_interval(secs => $1)",
        older_than_days * 86_400,
    )
    return int(result.split()[-1])
