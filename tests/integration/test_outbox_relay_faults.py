"""The outbox relay cannot die: broker errors, rows that can never be published, a
producer that will not start. Real PostgreSQL; the real broker where its refusal is the
point, a scripted producer where the failure must be exact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import errors as kafka_errors

from shared.client import OfframpClient
from shared.contracts import topics
from shared.contracts.topics import TOPIC_BY_NAME, TOPICS, physical
from shared.kafka import KafkaRelayProducer, ensure_topics
from shared.migrations import migrate
from shared.outbox import OutboxRelay, OutgoingMessage, RelayProducer, write_outbox
from tests.conftest import SessionEnv
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(test_env: SessionEnv, tmp_path: Path) -> AsyncIterator[asyncpg.Connection]:
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(
        test_env.database_url, server_settings={"search_path": schema}
    )
    await migrate(connection, schema=schema, service_dir=tmp_path)
    yield connection
    await connection.execute(f"DROP SCHEMA {schema} CASCADE")
    await connection.close()


def row(key: str, value: bytes = b"{}", topic: str = topics.COMMANDS) -> OutgoingMessage:
    return OutgoingMessage(topic=topic, key=key, value=value, headers={"message-type": "t"})


async def write(conn: asyncpg.Connection, *messages: OutgoingMessage) -> None:
    async with conn.transaction():
        await write_outbox(conn, messages)


async def schema_of(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SELECT current_schema()"))


async def running(relay: OutboxRelay, until: Callable[[], Awaitable[bool]], what: str) -> None:
    task = asyncio.create_task(relay.run())
    try:
        await eventually(until, what=what)
    finally:
        relay.stop()
        await task


async def test_rows_the_broker_refuses_are_quarantined_and_the_rows_behind_them_go_out(
    test_env: SessionEnv, conn: asyncpg.Connection
) -> None:
    namespace = f"{test_env.topic_namespace}relay-{uuid.uuid4().hex[:6]}."
    spec = TOPIC_BY_NAME[topics.COMMANDS]
    await ensure_topics(
        test_env.kafka_bootstrap_servers,
        [type(spec)(physical(spec.name, namespace), 1, spec.producer, spec.description)],
    )
    await write(
        conn,
        row("first"),
        row("too-large", b"x" * 2_000_000),
        row("nowhere", topic="offramp.nowhere.v1"),
        row("last"),
    )
    relay = OutboxRelay(
        dsn=test_env.database_url,
        schema=await schema_of(conn),
        producer_factory=lambda: KafkaRelayProducer(
            test_env.kafka_bootstrap_servers, client_id="relay-test", namespace=namespace
        ),
        known_topics=[t.name for t in TOPICS],
        poll_interval_s=0.1,
    )

    async def emptied() -> bool:
        return bool(await conn.fetchval("SELECT count(*) FROM outbox") == 0)

    await running(relay, emptied, "the outbox to empty")
    quarantined = await conn.fetch("SELECT key, reason FROM outbox_quarantine ORDER BY id")
    async with OfframpClient(test_env.kafka_bootstrap_servers, namespace) as client:
        published = await client.read_all(topics.COMMANDS)
    assert [r["key"] for r in quarantined] == ["too-large", "nowhere"]
    assert "MessageSizeTooLarge" in quarantined[0]["reason"]
    assert "unknown topic 'offramp.nowhere.v1'" in quarantined[1]["reason"]
    assert len(published) == 2
    assert (relay.stats.relayed, relay.stats.quarantined) == (2, 2)


class ScriptedProducer:
    """Fails every send while ``broker_down`` is set, and always for keys in ``refuse``."""

    def __init__(self, world: ScriptedWorld) -> None:
        self._world = world

    async def start(self) -> None:
        self._world.starts += 1
        if self._world.failing_starts:
            self._world.failing_starts -= 1
            raise kafka_errors.KafkaConnectionError("no broker to start against")

    async def stop(self) -> None:
        self._world.stops += 1

    async def topic_ready(self, topic: str) -> None:
        del topic

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        del topic, value, headers
        world = self._world
        if world.broker_down:
            world.broker_down -= 1
            raise kafka_errors.KafkaTimeoutError()
        if key.decode() in world.refuse:
            raise world.refuse[key.decode()]
        world.sent.append(key.decode())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class ScriptedWorld:
    def __init__(self, *, failing_starts: int = 0, broker_down: int = 0) -> None:
        self.failing_starts = failing_starts
        self.broker_down = broker_down
        self.refuse: dict[str, Exception] = {}
        self.sent: list[str] = []
        self.starts = 0
        self.stops = 0

    def producer(self) -> RelayProducer:
        return ScriptedProducer(self)


def scripted_relay(test_env: SessionEnv, schema: str, world: ScriptedWorld) -> OutboxRelay:
    return OutboxRelay(
        dsn=test_env.database_url,
        schema=schema,
        producer_factory=world.producer,
        poll_interval_s=0.05,
        max_row_attempts=3,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )


async def test_a_broker_outage_quarantines_nothing_and_a_fresh_producer_sends_everything(
    test_env: SessionEnv, conn: asyncpg.Connection
) -> None:
    # The first producer cannot start, then every send of the next rounds times out.
    world = ScriptedWorld(failing_starts=2, broker_down=12)
    await write(conn, *(row(f"r-{i}") for i in range(4)))
    relay = scripted_relay(test_env, await schema_of(conn), world)
    worst: list[int] = []

    async def all_sent() -> bool:
        worst.append(relay.stats.consecutive_failures)
        return len(world.sent) == 4

    await running(relay, all_sent, "every row once the broker is back")
    assert world.sent == ["r-0", "r-1", "r-2", "r-3"]
    assert await conn.fetchval("SELECT count(*) FROM outbox_quarantine") == 0
    assert world.starts >= 4, "a fresh producer after each failed start or round"
    assert max(worst) >= 2, "the relay reported rounds failing in a row"
    assert relay.stats.consecutive_failures == 0


async def test_a_row_that_fails_alone_while_others_go_out_is_quarantined_after_its_attempts(
    test_env: SessionEnv, conn: asyncpg.Connection
) -> None:
    world = ScriptedWorld()
    world.refuse["stuck"] = kafka_errors.PolicyViolationError()
    relay = scripted_relay(test_env, await schema_of(conn), world)
    await write(conn, row("a-0"), row("stuck"), row("a-1"))

    async def settled() -> bool:
        return bool(await conn.fetchval("SELECT count(*) FROM outbox") == 0)

    await running(relay, settled, "the stuck row set aside")
    quarantined = await conn.fetch("SELECT key, attempts, reason FROM outbox_quarantine")
    assert [(r["key"], r["attempts"]) for r in quarantined] == [("stuck", 3)]
    assert "PolicyViolation" in quarantined[0]["reason"]
    assert world.sent == ["a-0", "a-1"]


@pytest.mark.parametrize("standby", [False, True], ids=["leader", "standby"])
async def test_a_relay_reports_itself_healthy_again_once_the_database_is_back(
    test_env: SessionEnv, conn: asyncpg.Connection, standby: bool
) -> None:
    schema = await schema_of(conn)
    if standby:  # another replica leads: this relay only stands by
        await conn.execute("SELECT pg_advisory_lock(hashtext('offramp.outbox.' || $1))", schema)
    relay = scripted_relay(test_env, schema, ScriptedWorld())
    relay._dsn = "postgresql://offramp:offramp@127.0.0.1:1/offramp"  # the database is away
    task = asyncio.create_task(relay.run())
    try:
        await eventually(
            lambda: asyncio.sleep(0, relay.stats.consecutive_failures),
            until=lambda failures: failures >= 2,
            what="the relay failing in a row",
        )
        relay._dsn = test_env.database_url  # back, with nothing to relay
        await eventually(
            lambda: asyncio.sleep(0, relay.stats.consecutive_failures),
            until=lambda failures: failures == 0,
            what="the relay healthy again",
        )
    finally:
        relay.stop()
        await task
    assert relay.is_leader is False


@pytest.mark.parametrize(
    "error",
    [kafka_errors.KafkaTimeoutError(), kafka_errors.NotLeaderForPartitionError()],
    ids=["timed-out", "between-leaders"],
)
async def test_a_row_the_broker_cannot_take_for_now_is_never_quarantined(
    test_env: SessionEnv, conn: asyncpg.Connection, error: Exception
) -> None:
    # Its partition has no leader (or times out) while the rest of the cluster works.
    world = ScriptedWorld()
    world.refuse["waiting"] = error
    relay = scripted_relay(test_env, await schema_of(conn), world)
    await write(conn, row("a-0"), row("waiting"))
    for _ in range(5):  # more rounds than max_row_attempts
        await relay.relay_once(conn)
    left = await conn.fetch("SELECT key, attempts FROM outbox")
    assert [(r["key"], r["attempts"]) for r in left] == [("waiting", 0)]
    assert await conn.fetchval("SELECT count(*) FROM outbox_quarantine") == 0


async def test_a_relay_whose_producer_cannot_start_reports_failing_rounds_in_a_row(
    test_env: SessionEnv, conn: asyncpg.Connection
) -> None:
    world = ScriptedWorld(failing_starts=1_000)  # the broker is away for good
    await write(conn, row("r-0"))
    relay = scripted_relay(test_env, await schema_of(conn), world)
    seen: list[int] = []

    async def failing_for_a_while() -> bool:
        seen.append(relay.stats.consecutive_failures)
        return world.starts >= 6

    await running(relay, failing_for_a_while, "several failed starts")
    assert seen[-1] >= 4, f"readiness must see the relay failing: {seen}"
    assert seen == sorted(seen), "never reset while nothing is published"


async def test_a_topic_the_broker_does_not_know_holds_back_no_other_row(
    test_env: SessionEnv, conn: asyncpg.Connection
) -> None:
    namespace = f"{test_env.topic_namespace}relay-{uuid.uuid4().hex[:6]}."
    spec = TOPIC_BY_NAME[topics.COMMANDS]
    await ensure_topics(
        test_env.kafka_bootstrap_servers,
        [type(spec)(physical(spec.name, namespace), 1, spec.producer, spec.description)],
    )
    # The enrollment events topic is a contract topic, but nobody created it here.
    await write(
        conn,
        row("missing-1", topic=topics.ENROLLMENT_EVENTS),
        row("missing-2", topic=topics.ENROLLMENT_EVENTS),
        row("command"),
    )
    relay = OutboxRelay(
        dsn=test_env.database_url,
        schema=await schema_of(conn),
        producer_factory=lambda: KafkaRelayProducer(
            test_env.kafka_bootstrap_servers, client_id="relay-test", namespace=namespace
        ),
        known_topics=[t.name for t in TOPICS],
    )
    try:
        relayed, kept = await relay.relay_once(conn)
    finally:
        await relay._close_producer()
    left = await conn.fetch("SELECT key, attempts, last_error FROM outbox ORDER BY id")
    assert (relayed, kept) == (1, 2)
    assert [(r["key"], r["attempts"]) for r in left] == [("missing-1", 1), ("missing-2", 1)]
    assert "does not know" in left[0]["last_error"]
