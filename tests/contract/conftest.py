"""The contract suites run each store port against its fake and its PostgreSQL store:
a fake that passes them behaves like the real thing for every handler test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from shared.migrations import migrate
from tests.conftest import SessionEnv

SERVICES = Path(__file__).resolve().parents[2] / "services"


@contextlib.asynccontextmanager
async def migrated_schema(test_env: SessionEnv, service: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection on a fresh schema holding ``service``'s tables; dropped afterwards."""
    schema = f"contract_{service[:12]}_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(
        test_env.database_url, server_settings={"search_path": schema}
    )
    try:
        await migrate(connection, schema=schema, service_dir=SERVICES / service / "migrations")
        yield connection
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()
