"""PostgreSQL plumbing: one pool per service, pinned to the service's own schema."""

from __future__ import annotations

import re
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

DbConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection, whether taken from a pool or opened alone."""

_SCHEMA = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    if not _SCHEMA.match(schema):
        raise ValueError(f"schema name {schema!r} must be lower-case letters, digits, '_'")
    return schema


async def _keep_session(_conn: asyncpg.Connection) -> None:
    return None


async def create_pool(
    dsn: str,
    *,
    schema: str,
    application_name: str,
    min_size: int = 2,
    max_size: int = 10,
    command_timeout_s: float | None = 60.0,
) -> asyncpg.Pool:
    """A pool whose connections see only ``schema`` unqualified (plus ``public``).

    Every service's SQL is unqualified, so a service cannot reach another's tables by
    accident: ownership of state is enforced by the search path.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # A statement that never answers (a black-holed connection after a failover) ends
        # as a time-out, which every caller treats as transient, instead of hanging a loop.
        command_timeout=command_timeout_s,
        # Our code leaves no session state behind (SET LOCAL only, advisory locks released,
        # LISTEN on dedicated connections), so skip the reset round trip on every release.
        reset=_keep_session,
        server_settings={
            "search_path": check_schema_name(schema),
            "application_name": application_name,
        },
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only without awaiting
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


# SQLSTATEs that are never the message's fault: retry the work later, never dead-letter.
_TRANSIENT_CLASSES = ("08", "40", "53", "57P", "58")
_TRANSIENT_STATES = frozenset({"57014", "55P03", "55006", "25006", "25P03"})
# The deployment, not the message: a revoked privilege, a table or column a half-applied
# migration has not made yet. Waiting (and readiness false) beats dead-lettering everything.
_DEPLOYMENT_STATES = frozenset({"42501", "42P01", "42703", "3D000", "3F000"})


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says the database or the network failed, not the work itself.

    Connection loss, serialization failures and deadlocks (class 40), insufficient
    resources such as a full disk (53), an operator or failover shutdown (57P), query
    canceled (57014), lock not available (55P03), read-only transaction during a failover
    (25006), and time-outs.
    """
    if isinstance(
        exc,
        OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError,
    ):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return (
            state in _TRANSIENT_STATES
            or state in _DEPLOYMENT_STATES
            or state.startswith(_TRANSIENT_CLASSES)
        )
    return False
