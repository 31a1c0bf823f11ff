"""Quarantined outbox rows: list them, release them to the outbox again, or drop them.

The outbox relay (``shared.outbox.OutboxRelay``) moves a row it can never publish (too
large for the broker, unknown topic, refused, or failing alone too many times) from a
service schema's ``outbox`` to ``outbox_quarantine``. Once the operator has fixed the
cause (created the topic, raised the broker's ``message.max.bytes``...), ``release`` moves
the rows back: each gets a new outbox id, so it is relayed after what is already waiting,
with its attempts at 0. ``drop`` deletes rows that must never be published.

Operator tooling (``offramp quarantine``), not imported by the services. Every statement
names its schema, validated by ``check_schema_name``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.db import DbConnection, check_schema_name

SERVICE_SCHEMAS = ("enrollment", "scheduler", "trigger_evaluator", "messaging")


def schema_of(service: str) -> str:
    """The schema of ``service`` (``trigger-evaluator`` and ``trigger_evaluator`` alike)."""
    return check_schema_name(service.strip().replace("-", "_"))


class SchemaState(StrEnum):
    READY = "ready"
    NO_SCHEMA = "no such schema"
    NO_TABLE = "no outbox_quarantine table (migrations not applied yet)"


async def schema_state(conn: DbConnection, schema: str) -> SchemaState:
    check_schema_name(schema)
    found = await conn.fetchrow(
        """SELECT to_regnamespace($1) IS NOT NULL AS schema_exists,
                  to_regclass($2) IS NOT NULL AS table_exists""",
        schema,
        f"{schema}.outbox_quarantine",
    )
    if found is None or not found["schema_exists"]:
        return SchemaState.NO_SCHEMA
    return SchemaState.READY if found["table_exists"] else SchemaState.NO_TABLE


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    schema: str
    id: int
    topic: str
    key: str
    value: bytes
    headers: dict[str, Any]
    created_at: datetime
    attempts: int
    reason: str
    quarantined_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The whole row as JSON: the value as text when it is UTF-8, else in base64."""
        document: dict[str, Any] = {
            "service": self.schema,
            "id": self.id,
            "topic": self.topic,
            "key": self.key,
            "value_size": len(self.value),
            "headers": self.headers,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "attempts": self.attempts,
            "reason": self.reason,
            "quarantined_at": self.quarantined_at.astimezone(UTC).isoformat(),
        }
        try:
            document["value"] = self.value.decode()
        except UnicodeDecodeError:
            document["value"] = None
            document["value_base64"] = base64.b64encode(self.value).decode()
        return document


@dataclass(frozen=True, slots=True)
class SchemaListing:
    schema: str
    state: SchemaState
    rows: list[QuarantinedRow] = field(default_factory=list)


def _headers(raw: object) -> dict[str, Any]:
    loaded = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return loaded if isinstance(loaded, dict) else {"": loaded}


async def list_quarantined(conn: DbConnection, schemas: Iterable[str]) -> list[SchemaListing]:
    """Each schema's quarantined rows, oldest quarantine first (or why there are none)."""
    listings = []
    for schema in schemas:
        state = await schema_state(conn, schema)
        if state is not SchemaState.READY:
            listings.append(SchemaListing(schema, state))
            continue
        records = await conn.fetch(
            f"""SELECT id, topic, key, value, headers, created_at, attempts, reason,
                       quarantined_at
                FROM {schema}.outbox_quarantine ORDER BY quarantined_at, id"""
        )
        rows = [
            QuarantinedRow(
                schema=schema,
                id=r["id"],
                topic=r["topic"],
                key=r["key"],
                value=bytes(r["value"]),
                headers=_headers(r["headers"]),
                created_at=r["created_at"],
                attempts=r["attempts"],
                reason=r["reason"],
                quarantined_at=r["quarantined_at"],
            )
            for r in records
        ]
        listings.append(SchemaListing(schema, state, rows))
    return listings


class QuarantineError(Exception):
    """The schema cannot be worked on (it or its quarantine table does not exist)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    id: int
    done: bool
    new_id: int | None = None
    """For a released row: its id in the outbox (None on a dry run)."""


async def _require_ready(conn: DbConnection, schema: str) -> None:
    state = await schema_state(conn, schema)
    if state is not SchemaState.READY:
        raise QuarantineError(f"{schema}: {state.value}")


async def _locked_ids(conn: DbConnection, schema: str, ids: Sequence[int] | None) -> list[int]:
    """Lock and return the selected quarantined ids (every one when ``ids`` is None)."""
    if ids is None:
        found = await conn.fetch(
            f"SELECT id FROM {schema}.outbox_quarantine ORDER BY id FOR UPDATE"
        )
    else:
        found = await conn.fetch(
            f"""SELECT id FROM {schema}.outbox_quarantine WHERE id = ANY($1::bigint[])
                ORDER BY id FOR UPDATE""",
            list(ids),
        )
    return [r["id"] for r in found]


def _outcomes(
    ids: Sequence[int] | None, found: Sequence[int], new_ids: dict[int, int]
) -> list[Outcome]:
    done = [Outcome(i, True, new_ids.get(i)) for i in found]
    missing = sorted(set(ids or ()) - set(found))
    return done + [Outcome(i, False) for i in missing]


async def release(
    conn: DbConnection, schema: str, ids: Sequence[int] | None, *, dry_run: bool = False
) -> list[Outcome]:
    """Move the selected rows (every one when ``ids`` is None) back to the outbox, in id
    order and in one transaction: each gets a new outbox id, attempts 0."""
    check_schema_name(schema)
    await _require_ready(conn, schema)
    new_ids: dict[int, int] = {}
    async with conn.transaction():
        found = await _locked_ids(conn, schema, ids)
        if not dry_run:
            for row_id in found:
                new_id = await conn.fetchval(
                    f"""INSERT INTO {schema}.outbox (topic, key, value, headers)
                        SELECT topic, key, value, headers FROM {schema}.outbox_quarantine
                        WHERE id = $1
                        RETURNING id""",
                    row_id,
                )
                new_ids[row_id] = int(new_id)
            await conn.execute(
                f"DELETE FROM {schema}.outbox_quarantine WHERE id = ANY($1::bigint[])", found
            )
    return _outcomes(ids, found, new_ids)


async def drop(conn: DbConnection, schema: str, ids: Sequence[int]) -> list[Outcome]:
    """Delete the selected quarantined rows for good."""
    check_schema_name(schema)
    await _require_ready(conn, schema)
    async with conn.transaction():
        found = await _locked_ids(conn, schema, ids)
        await conn.execute(
            f"DELETE FROM {schema}.outbox_quarantine WHERE id = ANY($1::bigint[])", found
        )
    return _outcomes(ids, found, {})
