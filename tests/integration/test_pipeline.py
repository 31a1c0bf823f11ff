"""The idempotent consumer on the real broker and database: duplicates, bad input,
rejections, transient and permanent failures, and offsets committed after the database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.consumer import RejectedMessageError
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import Enroll, EnrollPayload
from shared.contracts.topics import TOPIC_BY_NAME
from shared.uow import UnitOfWork
from tests.conftest import SessionEnv
from tests.support.enroll_consumer import TestRuntime, enroll_consumer
from tests.support.kafka import TopicClient, of_type
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

ACCOUNT = "acc-pipeline"
ACTOR = Actor(kind=ActorKind.API, id="test")


class Behaviour:
    """What the test handler does, by workflow id; counts attempts per message."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    async def handle(self, uow: UnitOfWork[Any], commands: list[Enroll], now: datetime) -> None:
        for command in commands:
            await self.handle_one(uow, command)

    async def handle_one(self, uow: UnitOfWork[Any], command: Enroll) -> None:
        key = str(command.message_id)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        workflow = command.payload.workflow_id
        await uow.conn.execute(
            "INSERT INTO effects (message_id, record_id) VALUES ($1, $2)",
            command.message_id,
            command.payload.record.id,
        )
        if workflow == "reject":
            raise RejectedMessageError("workflow 'reject' belongs to another account")
        if workflow == "flaky" and self.attempts[key] < 3:
            raise RuntimeError("transient failure")
        if workflow == "broken":
            raise RuntimeError("this handler always fails")


def enroll(workflow_id: str, record_id: str) -> Enroll:
    return Enroll.create(
        account_id=ACCOUNT,
        payload=EnrollPayload(
            workflow_id=workflow_id,
            record=RecordRef(type=RecordType.CONTACT, id=record_id),
            actor=ACTOR,
        ),
    )


@pytest.fixture
async def service(test_env: SessionEnv) -> AsyncIterator[tuple[TestRuntime, Behaviour]]:
    behaviour = Behaviour()
    migrations = Path(__file__).parent / "pipeline_migrations"
    async with enroll_consumer(
        test_env, "pipeline-test", migrations, behaviour.handle, consumer_max_attempts=4
    ) as runtime:
        yield runtime, behaviour


async def effects(test_env: SessionEnv, runtime: TestRuntime) -> list[str]:
    conn = await asyncpg.connect(test_env.database_url)
    try:
        rows = await conn.fetch(
            f"SELECT record_id FROM {runtime.spec.schema}.effects ORDER BY record_id"
        )
    finally:
        await conn.close()
    return [r["record_id"] for r in rows]


async def test_each_message_applies_once_and_bad_input_is_dead_lettered(
    service: tuple[TestRuntime, Behaviour], test_env: SessionEnv
) -> None:
    runtime, behaviour = service
    good = enroll("ok", "r-good")
    flaky = enroll("flaky", "r-flaky")
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        await kafka.publish(good)
        await kafka.publish(good)  # a duplicate delivery
        await kafka.publish(flaky)
        await kafka.publish(enroll("reject", "r-rejected"))
        await kafka.publish(enroll("broken", "r-broken"))
        await kafka.publish_raw(topics.COMMANDS, b"{not json", key="acc/contact/x")
        await kafka.publish_raw(
            topics.COMMANDS,
            b'{"message_id": "m-1", "account_id": "acc", "type": "enrollment.teleport"}',
            key="acc/contact/x",
        )
        await kafka.publish_raw(
            topics.COMMANDS,
            b'{"message_id": "' + str(uuid.uuid4()).encode() + b'", "type": "enrollment.enroll",'
            b' "account_id": "acc", "occurred_at": "2026-01-01T00:00:00Z", "payload": {}}',
            key="acc/contact/x",
        )
        await kafka.publish(enroll("ok", "r-last"))

        dead = await eventually(
            lambda: kafka.read_all(topics.DEAD_LETTER),
            until=lambda docs: len(of_type(docs, "deadletter.recorded")) >= 4,
            what="four dead letters",
        )
    reasons = {d["payload"]["error_kind"]: d["payload"] for d in dead}
    assert set(reasons) == {"invalid_json", "invalid_message", "rejected", "processing_failed"}
    assert "payload.workflow_id: Field required" in reasons["invalid_message"]["reason"]
    assert reasons["rejected"]["reason"] == "workflow 'reject' belongs to another account"
    assert reasons["processing_failed"]["attempts"] == 4
    assert "this handler always fails" in reasons["processing_failed"]["reason"]
    assert reasons["invalid_json"]["original_value"] == "{not json"

    applied = await eventually(
        lambda: effects(test_env, runtime),
        until=lambda rows: {"r-flaky", "r-last"} <= set(rows),
        what="the last message",
    )
    # The duplicate, the rejection and the broken handler left nothing behind.
    assert applied == ["r-flaky", "r-good", "r-last"]
    assert behaviour.attempts[str(flaky.message_id)] == 3
    assert runtime.pipeline is not None
    assert runtime.pipeline.stats.unknown_types == 1
    assert runtime.pipeline.stats.duplicates == 1


async def test_offsets_are_committed_after_processing(
    service: tuple[TestRuntime, Behaviour], test_env: SessionEnv
) -> None:
    runtime, _ = service
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        await kafka.publish(enroll("ok", "r-offsets"))
        topic = kafka.topic(topics.COMMANDS)
    await eventually(
        lambda: effects(test_env, runtime),
        until=lambda rows: "r-offsets" in rows,
        what="the message",
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=test_env.kafka_bootstrap_servers)
    await admin.start()
    try:
        probe = AIOKafkaConsumer(bootstrap_servers=test_env.kafka_bootstrap_servers)
        await probe.start()
        try:
            count = TOPIC_BY_NAME[topics.COMMANDS].partitions
            partitions = [TopicPartition(topic, p) for p in range(count)]
            ends = await probe.end_offsets(partitions)
        finally:
            await probe.stop()

        async def committed() -> dict[TopicPartition, int]:
            offsets = await admin.list_consumer_group_offsets(runtime.group_id)
            return {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic}

        written = {tp: end for tp, end in ends.items() if end}
        got = await eventually(
            committed,
            until=lambda got: all(got.get(tp, 0) == end for tp, end in written.items()),
            what="committed offsets at the end of every partition",
        )
    finally:
        await admin.close()
    assert written, "the message was written to some partition"
    assert {tp: got[tp] for tp in written} == written


async def test_a_database_outage_redelivers_instead_of_dead_lettering(
    service: tuple[TestRuntime, Behaviour], test_env: SessionEnv
) -> None:
    runtime, _ = service
    assert runtime.pipeline is not None
    real_provider = runtime.pipeline._pool_provider
    outage = {"left": 3}

    def flaky_provider() -> asyncpg.Pool:
        if outage["left"]:
            outage["left"] -= 1
            raise ConnectionRefusedError("database is down")
        return real_provider()

    runtime.pipeline._pool_provider = flaky_provider
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        await kafka.publish(enroll("ok", "r-after-outage"))
        applied = await eventually(
            lambda: effects(test_env, runtime),
            until=lambda rows: "r-after-outage" in rows,
            what="the message applied once the database is back",
        )
        dead = await kafka.read_all(topics.DEAD_LETTER)
    assert applied.count("r-after-outage") == 1
    assert runtime.pipeline.stats.database_unavailable == 3
    assert not [d for d in dead if "r-after-outage" in d["payload"]["original_value"]]
