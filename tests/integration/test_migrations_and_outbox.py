"""Migrations and the outbox relay on the real database and broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.client import OfframpClient, of_type
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import Exit, ExitPayload, ExitReason, ExitSource
from shared.contracts.topics import physical
from shared.kafka import KafkaRelayProducer, ensure_topics
from shared.migrations import MigrationError, migrate
from shared.outbox import OutboxRelay, OutgoingMessage, write_outbox
from tests.conftest import SessionEnv
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(test_env: SessionEnv) -> AsyncIterator[str]:
    name = f"mig_{uuid.uuid4().hex[:8]}"
    yield name
    conn = await asyncpg.connect(test_env.database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


def write_migration(directory: Path, name: str, sql: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(sql)


async def test_replicas_starting_together_apply_each_migration_once(
    test_env: SessionEnv, schema: str, tmp_path: Path
) -> None:
    write_migration(tmp_path, "0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    write_migration(tmp_path, "0002_more.sql", "ALTER TABLE things ADD COLUMN name text;")
    connections = [await asyncpg.connect(test_env.database_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(
            *(migrate(c, schema=schema, service_dir=tmp_path) for c in connections)
        )
        rows = await connections[0].fetch(
            f"SELECT track, version FROM {schema}.schema_migrations ORDER BY track, version"
        )
    finally:
        for conn in connections:
            await conn.close()
    assert sorted(len(a) for a in applied) == [0, 0, 0, 6]  # plumbing's four + the service's
    assert [tuple(r) for r in rows] == [
        ("plumbing", 1),
        ("plumbing", 2),
        ("plumbing", 3),
        ("plumbing", 4),
        ("service", 1),
        ("service", 2),
    ]


async def test_an_edited_migration_stops_the_start(
    test_env: SessionEnv, schema: str, tmp_path: Path
) -> None:
    write_migration(tmp_path, "0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    conn = await asyncpg.connect(test_env.database_url)
    try:
        await migrate(conn, schema=schema, service_dir=tmp_path)
        write_migration(tmp_path, "0001_things.sql", "CREATE TABLE things (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, schema=schema, service_dir=tmp_path)
    finally:
        await conn.close()


def exit_command(record_id: str) -> Exit:
    return Exit.create(
        account_id="acc-outbox",
        payload=ExitPayload(
            record=RecordRef(type=RecordType.CONTACT, id=record_id),
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=Actor(kind=ActorKind.API, id="test"),
        ),
    )


async def write_then_roll_back(conn: asyncpg.Connection, schema: str) -> None:
    async with conn.transaction():
        await write_outbox(conn, [OutgoingMessage.of(exit_command("ghost"))])
        raise RuntimeError("roll back")


async def test_relay_publishes_committed_rows_in_order_and_only_one_replica_leads(
    test_env: SessionEnv, schema: str, tmp_path: Path
) -> None:
    namespace = f"{test_env.topic_namespace}outbox-{uuid.uuid4().hex[:6]}."
    spec = topics.TOPIC_BY_NAME[topics.COMMANDS]
    await ensure_topics(
        test_env.kafka_bootstrap_servers,
        [type(spec)(physical(spec.name, namespace), 1, spec.producer, spec.description)],
    )
    conn = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
    relays = [
        OutboxRelay(
            dsn=test_env.database_url,
            schema=schema,
            producer_factory=lambda: KafkaRelayProducer(
                test_env.kafka_bootstrap_servers, client_id="outbox-test", namespace=namespace
            ),
            poll_interval_s=0.2,
        )
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        await migrate(conn, schema=schema, service_dir=tmp_path)
        commands = [exit_command(f"r-{i:03d}") for i in range(50)]
        async with conn.transaction():
            await write_outbox(conn, [OutgoingMessage.of(c) for c in commands[:25]])
        # A rolled-back write must never be published.
        with pytest.raises(RuntimeError, match="roll back"):
            await write_then_roll_back(conn, schema)
        async with conn.transaction():
            await write_outbox(conn, [OutgoingMessage.of(c) for c in commands[25:]])

        async with OfframpClient(test_env.kafka_bootstrap_servers, namespace) as client:
            published = await eventually(
                lambda: client.read_all(topics.COMMANDS),
                until=lambda docs: len(docs) >= 50,
                what="50 relayed commands",
            )
        await eventually(
            lambda: conn.fetchval("SELECT count(*) FROM outbox"),
            until=lambda n: n == 0,
            what="the outbox to empty",
        )
    finally:
        for relay in relays:
            relay.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await conn.close()
    ids = [d["payload"]["record"]["id"] for d in of_type(published, "enrollment.exit")]
    assert ids == [f"r-{i:03d}" for i in range(50)]  # one partition: the write order
    assert sum(r.relayed_total for r in relays) == 50
    assert sorted(r.relayed_total > 0 for r in relays) == [False, True]
