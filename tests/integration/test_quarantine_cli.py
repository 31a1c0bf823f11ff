"""``offramp quarantine`` on the real database: list shows each service's quarantined outbox
rows (or that its schema is not there), release moves rows back to the outbox with new
ids and attempts 0 (a dry run changes nothing), drop deletes them only with ``--yes``, and
unknown ids are reported."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.migrations import migrate
from shared.outbox import OutboxRelay
from tests.conftest import SessionEnv
from tests.support.infra import Infra
from tests.support.isolation import create_database, drop_database, with_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BINARY = b"\xff\xfe\x00not utf-8"


async def offramp(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "OFFRAMP_DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.cli",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def quarantine_row(
    conn: asyncpg.Connection,
    schema: str,
    row_id: int,
    *,
    topic: str = "offramp.enrollment.events.v1",
    value: bytes = b'{"type": "enrollment.enrolled"}',
    reason: str = "MessageSizeTooLargeError()",
    attempts: int = 1,
) -> None:
    await conn.execute(
        f"""INSERT INTO {schema}.outbox_quarantine
                (id, topic, key, value, headers, created_at, attempts, reason)
            VALUES ($1, $2, $3, $4, $5::jsonb, now() - interval '1 hour', $6, $7)""",
        row_id,
        topic,
        f"acme/contact/c-{row_id}",
        value,
        json.dumps({"message-id": f"m-{row_id}", "account-id": "acme"}),
        attempts,
        reason,
    )


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(test_env.database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def schema(conn: asyncpg.Connection, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated service schema with three quarantined rows (ids 7, 8, 9) and one row
    waiting in its outbox."""
    name = f"quar_{uuid.uuid4().hex[:8]}"
    await migrate(conn, schema=name, service_dir=tmp_path)
    await conn.execute(
        f"INSERT INTO {name}.outbox (topic, key, value) VALUES ('t', 'k', 'waiting')"
    )
    await quarantine_row(conn, name, 7, reason="MessageSizeTooLargeError('" + "x" * 200 + "')")
    await quarantine_row(conn, name, 8, topic="offramp.nowhere.v1", value=BINARY, attempts=10)
    await quarantine_row(conn, name, 9)
    try:
        yield name
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def quarantined_ids(conn: asyncpg.Connection, schema: str) -> list[int]:
    rows = await conn.fetch(f"SELECT id FROM {schema}.outbox_quarantine ORDER BY id")
    return [r["id"] for r in rows]


async def outbox(conn: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT id, topic, key, value, headers, attempts, last_error
            FROM {schema}.outbox ORDER BY id"""
    )


async def test_list_shows_each_row_and_the_count(test_env: SessionEnv, schema: str) -> None:
    code, out, err = await offramp(test_env.database_url, "quarantine", "list", "--service", schema)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["service", "id", "quarantined"]
    rows = {line.split()[1]: line for line in lines[1:4]}
    assert set(rows) == {"7", "8", "9"}
    assert "offramp.nowhere.v1" in rows["8"]
    assert f"{len(BINARY)} B" in rows["8"]
    assert "acme/contact/c-8" in rows["8"]
    assert "…" in rows["7"]  # the long reason is shortened
    assert "x" * 100 not in out
    assert f"{schema}: 3 quarantined row(s)" in lines


async def test_list_json_prints_each_row_whole(test_env: SessionEnv, schema: str) -> None:
    code, out, err = await offramp(
        test_env.database_url, "quarantine", "list", "--service", schema, "--json"
    )
    assert code == 0, err
    documents = {d["id"]: d for d in map(json.loads, out.splitlines())}
    assert set(documents) == {7, 8, 9}
    assert documents[9]["service"] == schema
    assert documents[9]["value"] == '{"type": "enrollment.enrolled"}'
    assert documents[9]["headers"] == {"message-id": "m-9", "account-id": "acme"}
    assert documents[8]["value"] is None
    assert documents[8]["value_size"] == len(BINARY)
    assert documents[8]["attempts"] == 10
    assert documents[7]["reason"].endswith("x" * 200 + "')")
    assert f"{schema}: 3 quarantined row(s)" in err


async def test_release_moves_rows_back_with_new_ids_and_no_attempts(
    test_env: SessionEnv, conn: asyncpg.Connection, schema: str
) -> None:
    waiting = (await outbox(conn, schema))[0]["id"]
    code, out, err = await offramp(
        test_env.database_url,
        "quarantine",
        "release",
        "--service",
        schema,
        "--id",
        "9",
        "--id",
        "8",
        "--id",
        "404",
    )
    assert code == 1, err  # an id was not found
    assert "404  not found" in out
    assert f"{schema}: released 2, not found 1, of 3 selected" in out
    assert await quarantined_ids(conn, schema) == [7]
    rows = await outbox(conn, schema)
    assert rows[0]["id"] == waiting
    released = rows[1:]
    assert [r["key"] for r in released] == ["acme/contact/c-8", "acme/contact/c-9"]
    assert all(r["id"] > waiting for r in released)
    assert [r["attempts"] for r in released] == [0, 0]
    assert [r["last_error"] for r in released] == [None, None]
    assert bytes(released[0]["value"]) == BINARY
    assert released[0]["topic"] == "offramp.nowhere.v1"
    assert json.loads(released[1]["headers"]) == {"message-id": "m-9", "account-id": "acme"}
    for old, new in ((8, released[0]["id"]), (9, released[1]["id"])):
        assert f"outbox id {new}" in next(
            line for line in out.splitlines() if line.startswith(f"{old} ")
        )


async def test_release_all_and_dry_run(
    test_env: SessionEnv, conn: asyncpg.Connection, schema: str
) -> None:
    code, out, err = await offramp(
        test_env.database_url, "quarantine", "release", "--service", schema, "--all", "--dry-run"
    )
    assert code == 0, err
    assert f"{schema}: would release 3, not found 0, of 3 selected" in out
    assert await quarantined_ids(conn, schema) == [7, 8, 9]
    assert len(await outbox(conn, schema)) == 1

    code, out, err = await offramp(
        test_env.database_url, "quarantine", "release", "--service", schema, "--all"
    )
    assert code == 0, err
    assert await quarantined_ids(conn, schema) == []
    keys = [r["key"] for r in await outbox(conn, schema)]
    assert keys == ["k", "acme/contact/c-7", "acme/contact/c-8", "acme/contact/c-9"]


async def test_release_refuses_without_a_selector(
    test_env: SessionEnv, conn: asyncpg.Connection, schema: str
) -> None:
    code, _, err = await offramp(
        test_env.database_url, "quarantine", "release", "--service", schema
    )
    assert code == 2
    assert "--id" in err
    code, _, err = await offramp(
        test_env.database_url, "quarantine", "release", "--service", schema, "--id", "7", "--all"
    )
    assert code == 2
    assert "one of them" in err
    assert await quarantined_ids(conn, schema) == [7, 8, 9]


async def test_drop_needs_yes_and_reports_unknown_ids(
    test_env: SessionEnv, conn: asyncpg.Connection, schema: str
) -> None:
    drop = ("quarantine", "drop", "--service", schema, "--id", "8", "--id", "404")
    code, _, err = await offramp(test_env.database_url, *drop)
    assert code == 2
    assert "--yes" in err
    assert await quarantined_ids(conn, schema) == [7, 8, 9]

    code, out, err = await offramp(test_env.database_url, *drop, "--yes")
    assert code == 1, err
    assert "404  not found" in out
    assert f"{schema}: dropped 1, not found 1, of 2 selected" in out
    assert await quarantined_ids(conn, schema) == [7, 9]
    assert len(await outbox(conn, schema)) == 1


async def test_a_missing_schema_or_bad_name_is_refused(test_env: SessionEnv) -> None:
    code, _, err = await offramp(
        test_env.database_url, "quarantine", "release", "--service", "quar_absent", "--all"
    )
    assert code == 2
    assert "quar_absent: no such schema" in err
    code, _, err = await offramp(
        test_env.database_url, "quarantine", "list", "--service", "Bad;Name"
    )
    assert code == 2
    assert "schema name" in err


async def test_list_defaults_to_the_four_services(
    infra: Infra, test_env: SessionEnv, tmp_path: Path
) -> None:
    """In a database of its own: one service migrated, one schema without the table yet,
    two absent."""
    database = f"{test_env.database_url.rsplit('/', 1)[1]}_quar"
    await create_database(infra.database_url, database)
    url = with_database(infra.database_url, database)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn, schema="enrollment", service_dir=tmp_path)
            await quarantine_row(conn, "enrollment", 3)
            await conn.execute("CREATE SCHEMA messaging")
        finally:
            await conn.close()
        code, out, err = await offramp(url, "quarantine", "list")
        assert code == 0, err
        assert "enrollment: 1 quarantined row(s)" in out
        assert "scheduler: no such schema" in out
        assert "trigger_evaluator: no such schema" in out
        assert "messaging: no outbox_quarantine table" in out
        code, out, err = await offramp(
            url, "quarantine", "list", "--service", "trigger-evaluator", "--service", "enrollment"
        )
        assert code == 0, err
        assert out.splitlines()[-2:] == [
            "trigger_evaluator: no such schema",
            "enrollment: 1 quarantined row(s)",
        ]
    finally:
        await drop_database(infra.database_url, database)


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def topic_ready(self, topic: str) -> None:
        del topic

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_relay_publishes_released_rows_after_what_was_waiting(
    test_env: SessionEnv, schema: str
) -> None:
    code, _, err = await offramp(
        test_env.database_url, "quarantine", "release", "--service", schema, "--id", "9"
    )
    assert code == 0, err
    producer = RecordingProducer()
    relay = OutboxRelay(dsn=test_env.database_url, schema=schema, producer_factory=lambda: producer)
    conn = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
    try:
        assert await relay.relay_once(conn) == (2, 0)
    finally:
        await conn.close()
    assert [(t, k) for t, k, _ in producer.sent] == [
        ("t", b"k"),
        ("offramp.enrollment.events.v1", b"acme/contact/c-9"),
    ]
