"""The inbox on the real database: bulk claims report only new ids; old ids are pruned."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared import inbox
from shared.inbox import InboxEntry
from shared.migrations import migrate
from tests.conftest import SessionEnv

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(test_env: SessionEnv, tmp_path: Path) -> AsyncIterator[asyncpg.Connection]:
    schema = f"inbox_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(
        test_env.database_url, server_settings={"search_path": schema}
    )
    await migrate(connection, schema=schema, service_dir=tmp_path)
    yield connection
    await connection.execute(f"DROP SCHEMA {schema} CASCADE")
    await connection.close()


def entry(message_id: str, outcome: str = "applied", **kw: Any) -> InboxEntry:
    return InboxEntry(kw.pop("account_id", "acc-1"), message_id, "t", outcome, **kw)


async def claimed_ids(conn: asyncpg.Connection, consumer: str, *entries: InboxEntry) -> set[str]:
    return {m for _, m in await inbox.claim_many(conn, consumer=consumer, entries=entries)}


async def test_a_bulk_claim_returns_only_ids_never_seen(conn: asyncpg.Connection) -> None:
    first = await claimed_ids(conn, "c", entry("a"), entry("b"))
    second = await claimed_ids(conn, "c", entry("b"), entry("c"), entry("c"))
    other_consumer = await claimed_ids(conn, "d", entry("a"))
    assert (first, second, other_consumer) == ({"a", "b"}, {"c"}, {"a"})


async def test_the_same_message_id_from_two_accounts_is_two_messages(
    conn: asyncpg.Connection,
) -> None:
    first = await inbox.claim_many(conn, consumer="c", entries=[entry("m", account_id="acc-1")])
    second = await inbox.claim_many(conn, consumer="c", entries=[entry("m", account_id="acc-2")])
    again = await inbox.claim_many(conn, consumer="c", entries=[entry("m", account_id="acc-2")])
    assert (first, second, again) == ({("acc-1", "m")}, {("acc-2", "m")}, set())


async def test_a_replay_claims_a_dead_lettered_id_but_never_an_applied_one(
    conn: asyncpg.Connection,
) -> None:
    await claimed_ids(conn, "c", entry("dead", "dead_lettered"), entry("done"))
    plain_redelivery = await claimed_ids(conn, "c", entry("dead"))
    replays = await claimed_ids(
        conn, "c", entry("dead", replay_of="dl-1"), entry("done", replay_of="dl-2")
    )
    replayed_twice = await claimed_ids(conn, "c", entry("dead", replay_of="dl-1"))
    outcome = await conn.fetchval("SELECT outcome FROM inbox WHERE message_id = 'dead'")
    assert (plain_redelivery, replays, replayed_twice, outcome) == (
        set(),
        {"dead"},
        set(),
        "applied",
    )


async def test_pruning_forgets_only_ids_older_than_the_window(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """INSERT INTO inbox
               (consumer, account_id, message_id, message_type, outcome, processed_at)
           SELECT 'c', 'acc-1', 'old-' || g, 't', 'applied', now() - interval '20 days'
           FROM generate_series(1, 25) g"""
    )
    await claimed_ids(conn, "c", entry("new"))
    pruned = 0
    while removed := await inbox.prune(conn, older_than_days=14, limit=10):
        pruned += removed
    assert pruned == 25
    assert await conn.fetchval("SELECT array_agg(message_id) FROM inbox") == ["new"]


async def test_an_id_processed_before_ids_were_keyed_by_account_stays_a_duplicate(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute(
        """INSERT INTO inbox_legacy (consumer, message_id, processed_at)
           VALUES ('c', 'old', now() - interval '1 day'),
                  ('c', 'older', now() - interval '20 days')"""
    )
    before_pruning = await claimed_ids(conn, "c", entry("old"), entry("old", account_id="acc-2"))
    other_consumer = await claimed_ids(conn, "d", entry("old"))
    await inbox.prune(conn, older_than_days=14)
    after_pruning = await claimed_ids(conn, "c", entry("older"))
    assert (before_pruning, other_consumer, after_pruning) == (set(), {"old"}, {"older"})
