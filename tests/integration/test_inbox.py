"""The inbox on the real database: bulk claims report only new ids; old ids are pruned."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared import inbox
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


async def test_a_bulk_claim_returns_only_ids_never_seen(conn: asyncpg.Connection) -> None:
    first = await inbox.claim_many(
        conn, consumer="c", entries=[("a", "t", "applied"), ("b", "t", "applied")]
    )
    second = await inbox.claim_many(
        conn,
        consumer="c",
        entries=[("b", "t", "applied"), ("c", "t", "applied"), ("c", "t", "applied")],
    )
    other_consumer = await inbox.claim_many(conn, consumer="d", entries=[("a", "t", "applied")])
    assert (first, second, other_consumer) == ({"a", "b"}, {"c"}, {"a"})


async def test_pruning_forgets_only_ids_older_than_the_window(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """INSERT INTO inbox (consumer, message_id, message_type, outcome, processed_at)
           SELECT 'c', 'old-' || g, 't', 'applied', now() - interval '20 days'
           FROM generate_series(1, 25) g"""
    )
    await inbox.claim_many(conn, consumer="c", entries=[("new", "t", "applied")])
    pruned = 0
    while removed := await inbox.prune(conn, older_than_days=14, limit=10):
        pruned += removed
    assert pruned == 25
    assert await conn.fetchval("SELECT array_agg(message_id) FROM inbox") == ["new"]
