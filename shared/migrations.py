"""Versioned SQL migrations, applied by each service on start.

Two tracks per schema: ``plumbing`` (``shared/sql``: inbox and outbox, the same in every
service) and the service's own ``migrations/`` folder. Files are ``NNNN_name.sql``,
applied in order, each in its own transaction, under an advisory lock so that replicas
starting together apply each file exactly once. An applied file that was edited afterwards
stops the start-up: write a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from shared.db import DbConnection, check_schema_name
from shared.logging import get_logger

PLUMBING_DIR = Path(__file__).parent / "sql"
MIGRATION_TIMEOUT_S = 6 * 3600.0
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
log = get_logger(__name__)


class MigrationError(RuntimeError):
    """A migration folder or the database's migration history is inconsistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    track: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(track: str, directory: Path) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake.sql")
        found.append(Migration(track, int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return found


async def migrate(conn: DbConnection, *, schema: str, service_dir: Path) -> list[str]:
    """Bring ``schema`` up to date; returns the names of the migrations applied now."""
    check_schema_name(schema)
    migrations = [
        *load_migrations("plumbing", PLUMBING_DIR),
        *load_migrations("service", service_dir),
    ]
    applied_now: list[str] = []
    # A transaction-level advisory lock would be released per file; hold a session lock.
    # Waiting for another replica's migrations, or one migration of a large table, may take
    # longer than any statement should at run time (OFFRAMP_DB_COMMAND_TIMEOUT_S).
    await conn.execute(
        "SELECT pg_advisory_lock(hashtext('offramp.migrate.' || $1))",
        schema,
        timeout=MIGRATION_TIMEOUT_S,
    )
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    track text NOT NULL, version int NOT NULL, name text NOT NULL,
                    checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (track, version))"""
        )
        rows = await conn.fetch(
            f"SELECT track, version, name, checksum FROM {schema}.schema_migrations"
        )
        done = {(r["track"], r["version"]): r for r in rows}
        for migration in migrations:
            previous = done.get((migration.track, migration.version))
            if previous is not None:
                if previous["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{schema}: migration {migration.track}/{migration.version:04d}_"
                        f"{migration.name} changed after it was applied; add a new one instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(migration.sql, timeout=MIGRATION_TIMEOUT_S)
                await conn.execute(
                    f"""INSERT INTO {schema}.schema_migrations (track, version, name, checksum)
                        VALUES ($1, $2, $3, $4)""",
                    migration.track,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(f"{migration.track}/{migration.version:04d}_{migration.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('offramp.migrate.' || $1))", schema)
    if applied_now:
        log.info("migrations_applied", schema=schema, migrations=applied_now)
    return applied_now
