"""The idempotent consumer against what production meets first, on the real broker and
database: poison records of every shape, two accounts sharing message ids, replayed dead
letters, and database errors that are not the message's fault."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared import metrics
from shared.consumer import REPLAY_HEADER, RejectedMessageError
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import Enroll, EnrollPayload
from shared.health import HealthServer
from shared.uow import UnitOfWork
from tests.conftest import SessionEnv
from tests.support.enroll_consumer import TestRuntime, enroll_consumer
from tests.support.kafka import TopicClient, of_type
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

ACTOR = Actor(kind=ActorKind.API, id="test")
KEY = "acc-a/contact/shared"


class Handler:
    """Records each applied message; ``reject_once`` workflows reject their first try,
    ``canceled`` ones hit a real statement timeout (SQLSTATE 57014) ``fail_times`` times."""

    def __init__(self) -> None:
        self.rejected: set[str] = set()
        self.canceled = 0
        self.fail_times = 3

    async def handle(self, uow: UnitOfWork[Any], commands: list[Enroll], now: datetime) -> None:
        for command in commands:
            await self.handle_one(uow, command)

    async def handle_one(self, uow: UnitOfWork[Any], command: Enroll) -> None:
        workflow = command.payload.workflow_id
        if workflow == "reject-once" and command.payload.record.id not in self.rejected:
            self.rejected.add(command.payload.record.id)
            raise RejectedMessageError("not yet")
        if workflow == "canceled" and self.canceled < self.fail_times:
            self.canceled += 1
            await uow.conn.execute("SET LOCAL statement_timeout = '10ms'")
            await uow.conn.execute("SELECT pg_sleep(1)")
        await uow.conn.execute(
            "INSERT INTO effects (account_id, message_id, record_id) VALUES ($1, $2, $3)",
            command.account_id,
            command.message_id,
            command.payload.record.id,
        )


def enroll(record_id: str, *, account: str = "acc-a", workflow: str = "ok", **kw: Any) -> Enroll:
    payload = EnrollPayload(
        workflow_id=workflow, record=RecordRef(type=RecordType.CONTACT, id=record_id), actor=ACTOR
    )
    return Enroll.create(account_id=account, payload=payload, **kw)


@pytest.fixture
async def service(test_env: SessionEnv) -> AsyncIterator[tuple[TestRuntime, Handler]]:
    handler = Handler()
    migrations = Path(__file__).parent / "fault_migrations"
    async with enroll_consumer(
        test_env, "fault-test", migrations, handler.handle, consumer_backoff_max_s=0.2
    ) as runtime:
        yield runtime, handler


async def effects(test_env: SessionEnv, runtime: TestRuntime) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(test_env.database_url)
    try:
        rows = await conn.fetch(
            f"SELECT account_id, record_id FROM {runtime.spec.schema}.effects ORDER BY 1, 2"
        )
    finally:
        await conn.close()
    return [(r["account_id"], r["record_id"]) for r in rows]


def poison() -> dict[str, bytes]:
    """One record of each shape that once stalled a consumer or that it must survive."""
    envelope = {"message_id": str(uuid.uuid4()), "account_id": "acc-a"}
    deep = b'{"type": "enrollment.enroll", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    huge = json.dumps({**envelope, "type": "enrollment.enroll", "payload": "x" * 900_000})
    return {
        "deep": deep,
        "huge": huge.encode(),
        "not_utf8": b'{"type": "\xff\xfe\xfd"}',
        "long_id": json.dumps({**envelope, "type": "x.new", "message_id": "m" * 5000}).encode(),
        "nul_id": json.dumps({**envelope, "type": "x.new", "message_id": "a\x00b"}).encode(),
        "wrong_types": json.dumps({**envelope, "type": "enrollment.enroll", "payload": 7}).encode(),
        "nul_value": b'{"type": "enrollment.enroll", "payload": "\\u0000"}',
    }


async def test_poison_records_are_dead_lettered_and_the_next_record_on_the_key_applies(
    service: tuple[TestRuntime, Handler], test_env: SessionEnv
) -> None:
    runtime, _ = service
    records = poison()
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        for name, value in records.items():
            await kafka.publish_raw(topics.COMMANDS, value, key=KEY)
            await kafka.publish(enroll(f"after-{name}"))
        # A valid message with a header FastStream cannot decode is still a valid message.
        await kafka.publish_record(
            kafka.topic(topics.COMMANDS),
            enroll("bad-header").to_json(),
            key=KEY.encode(),
            headers=[("x-broken", b"\xff\xfe"), ("x-empty", None)],  # type: ignore[list-item]
        )
        dead = await eventually(
            lambda: kafka.read_all(topics.DEAD_LETTER),
            until=lambda docs: len(of_type(docs, "deadletter.recorded")) >= len(records),
            what="a dead letter for every poison record",
        )
    applied = await eventually(
        lambda: effects(test_env, runtime),
        until=lambda rows: len(rows) >= len(records) + 1,
        what="every valid record after the poison",
    )
    assert sorted(r for _, r in applied) == sorted(
        [f"after-{name}" for name in records] + ["bad-header"]
    )
    by_offset = sorted(dead, key=lambda d: d["payload"]["source_offset"])
    kinds = [d["payload"]["error_kind"] for d in by_offset]
    assert kinds == [
        "invalid_json",  # deep: the parser gives up
        "invalid_message",  # huge but under 1 MB: read, and refused by the contract
        "invalid_json",  # not UTF-8
        "invalid_message",  # a 5,000-character id
        "invalid_message",  # NUL in the id
        "invalid_message",  # payload of the wrong type
        "invalid_message",  # payload of the wrong type, holding NUL
    ]
    huge = by_offset[1]["payload"]
    assert huge["original_truncated"] is True
    assert huge["original_size"] == len(records["huge"])
    assert len(huge["original_value"]) < len(records["huge"])
    assert by_offset[2]["payload"]["original_value"].startswith("b64:")
    assert {d["account_id"] for d in dead} <= {"acc-a", "unknown"}


async def test_two_accounts_sending_the_same_message_id_both_take_effect(
    service: tuple[TestRuntime, Handler], test_env: SessionEnv
) -> None:
    runtime, _ = service
    shared_id = uuid.uuid4()
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        for account in ("acc-a", "acc-b", "acc-a"):
            await kafka.publish(enroll("same", account=account, message_id=shared_id))
        applied = await eventually(
            lambda: effects(test_env, runtime),
            until=lambda rows: len(rows) >= 2,
            what="both accounts' messages",
        )
    assert applied == [("acc-a", "same"), ("acc-b", "same")]
    assert runtime.pipeline is not None
    assert runtime.pipeline.stats.duplicates == 1


async def test_a_replayed_dead_letter_applies_once(
    service: tuple[TestRuntime, Handler], test_env: SessionEnv
) -> None:
    runtime, _ = service
    message = enroll("replayed", workflow="reject-once")
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        await kafka.publish(message)
        dead = await eventually(
            lambda: kafka.read_all(topics.DEAD_LETTER),
            until=lambda docs: len(docs) == 1,
            what="the rejection's dead letter",
        )
        replay = [(REPLAY_HEADER, dead[0]["message_id"].encode())]
        await kafka.publish_raw(topics.COMMANDS, message.to_json(), key=KEY)  # plain redelivery
        for _ in range(2):
            await kafka.publish_record(
                kafka.topic(topics.COMMANDS), message.to_json(), key=KEY.encode(), headers=replay
            )
        await kafka.publish_raw(topics.COMMANDS, enroll("marker").to_json(), key=KEY)
        applied = await eventually(
            lambda: effects(test_env, runtime),
            until=lambda rows: ("acc-a", "marker") in rows,
            what="the marker after the replays",
        )
    assert applied == [("acc-a", "marker"), ("acc-a", "replayed")]
    assert runtime.pipeline is not None
    assert runtime.pipeline.stats.duplicates == 2


async def test_a_database_error_that_is_not_the_message_s_fault_is_retried_never_dead_lettered(
    service: tuple[TestRuntime, Handler], test_env: SessionEnv
) -> None:
    runtime, handler = service
    assert runtime.pipeline is not None
    health = HealthServer(runtime, port=0)
    readiness: list[bool] = []
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        await kafka.publish(enroll("after-timeouts", workflow="canceled"))

        async def ready_and_applied() -> list[tuple[str, str]]:
            checks = await health.readiness()
            readiness.append(not checks["consumer_failing"])
            return await effects(test_env, runtime)

        applied = await eventually(
            ready_and_applied,
            interval=0.01,
            what="the message once the statement stops timing out",
        )
        dead = await kafka.read_all(topics.DEAD_LETTER)
    assert applied == [("acc-a", "after-timeouts")]
    assert handler.canceled == 3
    assert dead == []
    assert runtime.pipeline.stats.database_unavailable == 3
    assert False in readiness, "unready while batches fail in a row"
    assert (await health.readiness())["consumer_failing"] is False


async def test_metrics_report_what_the_pipeline_and_the_outbox_did(
    service: tuple[TestRuntime, Handler], test_env: SessionEnv
) -> None:
    runtime, _ = service
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        await kafka.publish_raw(topics.COMMANDS, b"{not json", key=KEY)
        await kafka.publish(enroll("counted"))
        await eventually(
            lambda: kafka.read_all(topics.DEAD_LETTER), until=bool, what="the dead letter"
        )
    label = '{service="fault-test"}'

    async def samples_now() -> dict[str, float]:
        text = (await metrics.render(runtime)).decode()
        return {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith("offramp_")
        }

    # The relay counts a row once the broker acked it and the row is deleted: a moment
    # after a reader may already see it.
    samples = await eventually(
        samples_now,
        until=lambda s: s.get(f"offramp_outbox_relayed_total{label}", 0) >= 1,
        what="the relayed dead letter counted",
    )
    assert samples[f"offramp_consumer_messages_total{label}"] >= 2
    assert samples[f"offramp_consumer_dead_lettered_total{label}"] == 1
    assert samples[f"offramp_outbox_relayed_total{label}"] >= 1
    assert samples[f"offramp_outbox_quarantined_rows{label}"] == 0
    assert samples[f"offramp_background_loops_failed{label}"] == 0


async def test_a_dead_letter_of_text_that_escapes_to_many_times_its_size_still_fits(
    service: tuple[TestRuntime, Handler], test_env: SessionEnv
) -> None:
    runtime, _ = service
    # 300 KB of control characters: each one is six characters once escaped in JSON.
    value = b'{"type": "enrollment.enroll", "payload": "' + b"\x01" * 300_000 + b'"}'
    async with TopicClient(
        test_env.kafka_bootstrap_servers, runtime.settings.topic_namespace
    ) as kafka:
        await kafka.publish_raw(topics.COMMANDS, value, key=KEY)
        dead = await eventually(
            lambda: kafka.read_all(topics.DEAD_LETTER), until=bool, what="the dead letter"
        )
    assert len(dead) == 1
    payload = dead[0]["payload"]
    assert payload["original_truncated"] is True
    assert payload["original_size"] == len(value)
    assert runtime.relay is not None
    assert runtime.relay.stats.quarantined == 0
