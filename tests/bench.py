"""``make bench``: throughput and latency of the exit pipeline on the real system.

Starts the four services as processes on the local (or given) Kafka and PostgreSQL, in a
private database and topic namespace, then measures:

1. latency: inbound ``email.replied`` events published at a fixed rate (default 500/s);
   for each, the time until its ``enrollment.exited`` is read back from the enrollment
   events topic (publish → trigger-evaluator → command → enrollment → event);
2. throughput: a burst of replies published as fast as the producer goes; exits per
   second from the first publish to the last exit read back.

3. providers: emails/s through pooled SMTP to a local sink and SMS/s to a local
   Twilio-compatible HTTP API (``tests/bench_providers``, sizes OFFRAMP_BENCH_EMAILS and
   OFFRAMP_BENCH_SMS; 0 skips one);
4. sends end to end: emails and SMS from enroll to a local SMTP sink and HTTP provider
   through the four services (``tests/bench_sends``, sizes OFFRAMP_BENCH_SEND_EMAILS and
   OFFRAMP_BENCH_SEND_SMS).

Figures are printed; nothing is asserted (targets live in the issues, not in timed tests).
Sizes: OFFRAMP_BENCH_RATE, OFFRAMP_BENCH_SECONDS, OFFRAMP_BENCH_BURST; services' logs:
OFFRAMP_BENCH_LOGS (a folder to keep them in), OFFRAMP_BENCH_LOG_LEVEL (default WARNING).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.client import OfframpClient
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
)
from shared.contracts.inbound import EmailReplied, EmailRepliedPayload
from shared.contracts.topics import physical
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from shared.outbox import OutgoingMessage
from tests import bench_providers, bench_sends
from tests.support.infra import provide_infra
from tests.support.isolation import (
    create_database,
    delete_topics,
    drop_database,
    new_suffix,
    with_database,
)
from tests.support.processes import start_services, stop_services, wait_ready
from tests.support.waiting import eventually

ACCOUNT = "bench"
USER = Actor(kind=ActorKind.USER, id="bench")
WORKFLOW = WorkflowDefinition(
    workflow_id="wf-bench",
    name="Bench",
    record_type=RecordType.CONTACT,
    # The first step waits a day: the benchmark measures exits, not sends.
    steps=(Step(step_id="later", delay_seconds=86_400, subject="Later", body="..."),),
    settings=WorkflowSettings(exit_triggers=frozenset({ExitTrigger.REPLIED})),
)


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def record_id(i: int) -> str:
    return f"c-{i:07d}"


def reply(i: int) -> OutgoingMessage:
    return OutgoingMessage.of(
        EmailReplied.create(
            account_id=ACCOUNT,
            payload=EmailRepliedPayload(
                record=RecordRef(type=RecordType.CONTACT, id=record_id(i)),
                from_address=f"{record_id(i)}@example.com",
                message_header_id=f"<reply-{i}@example.com>",
            ),
        )
    )


class ExitWatcher:
    """Reads enrollment.exited events and notes when each record's exit arrived."""

    def __init__(self, bootstrap: str, namespace: str) -> None:
        self.arrived: dict[str, float] = {}
        # For the split of the latency: when enrollment decided each exit, wall clock.
        self.decided_wall: dict[str, float] = {}
        self.arrived_wall: dict[str, float] = {}
        self.commanded_wall: dict[str, float] = {}
        self._consumer = AIOKafkaConsumer(
            physical(topics.ENROLLMENT_EVENTS, namespace),
            physical(topics.COMMANDS, namespace),
            bootstrap_servers=bootstrap,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.seek_to_end()
        # Resolve the end positions now, before anything is published.
        for partition in self._consumer.assignment():
            await self._consumer.position(partition)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    document = json.loads(record.value)
                    if document["type"] == "enrollment.exit":
                        self.commanded_wall.setdefault(
                            document["payload"]["record"]["id"],
                            datetime.fromisoformat(document["occurred_at"]).timestamp(),
                        )
                    if document["type"] == "enrollment.exited":
                        key = document["payload"]["record"]["id"]
                        self.arrived.setdefault(key, now)
                        self.arrived_wall.setdefault(key, time.time())
                        self.decided_wall.setdefault(
                            key, datetime.fromisoformat(document["occurred_at"]).timestamp()
                        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()


async def enroll_all(client: OfframpClient, count: int) -> None:
    await client.publish_many(
        [
            Enroll.create(
                account_id=ACCOUNT,
                payload=EnrollPayload(
                    workflow_id=WORKFLOW.workflow_id,
                    record=RecordRef(type=RecordType.CONTACT, id=record_id(i)),
                    contact=ContactDetails(email=f"{record_id(i)}@example.com"),
                    actor=USER,
                ),
            )
            for i in range(count)
        ]
    )


async def publish_at_rate(
    producer: AIOKafkaProducer, namespace: str, ids: range, rate: float | None
) -> dict[str, float]:
    """Publish replies for ``ids`` at ``rate`` per second (None: as fast as possible)."""
    sent_at: dict[str, float] = {}
    sent_wall: dict[str, float] = SENT_WALL
    topic = physical(topics.INBOUND_EMAIL, namespace)
    started = time.perf_counter()
    pending = []
    for n, i in enumerate(ids):
        if rate is not None:
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        out = reply(i)
        sent_at[record_id(i)] = time.perf_counter()
        sent_wall[record_id(i)] = time.time()
        pending.append(await producer.send(topic, out.value, key=out.key.encode()))
    await asyncio.gather(*pending)
    return sent_at


SENT_WALL: dict[str, float] = {}


def report_latency(
    watcher: ExitWatcher, sent: dict[str, float], *, rate: float, seconds: float
) -> None:
    """Print the latency distribution and where it was spent (envelope times)."""
    steady = len(sent)
    latencies = [(watcher.arrived[k] - t) * 1000 for k, t in sent.items()]
    say(
        f"latency at {rate:.0f} replies/s for {seconds:.0f}s ({steady} exits): "
        f"p50 {percentile(latencies, 0.50):.0f} ms, "
        f"p95 {percentile(latencies, 0.95):.0f} ms, "
        f"p99 {percentile(latencies, 0.99):.0f} ms, "
        f"max {max(latencies):.0f} ms, mean {statistics.fmean(latencies):.0f} ms"
    )
    to_command = [(watcher.commanded_wall[k] - SENT_WALL[k]) * 1000 for k in sent]
    say(
        "  reply -> exit command decided in trigger-evaluator: "
        f"p50 {percentile(to_command, 0.5):.0f} ms, "
        f"p99 {percentile(to_command, 0.99):.0f} ms"
    )
    to_decision = [(watcher.decided_wall[k] - SENT_WALL[k]) * 1000 for k in sent]
    after_decision = [(watcher.arrived_wall[k] - watcher.decided_wall[k]) * 1000 for k in sent]
    say(
        "  of which reply -> exit decided in enrollment: "
        f"p50 {percentile(to_decision, 0.5):.0f} ms, "
        f"p99 {percentile(to_decision, 0.99):.0f} ms; decided -> exited event read: "
        f"p50 {percentile(after_decision, 0.5):.0f} ms, "
        f"p99 {percentile(after_decision, 0.99):.0f} ms"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    rate = float(os.environ.get("OFFRAMP_BENCH_RATE", "500"))
    seconds = float(os.environ.get("OFFRAMP_BENCH_SECONDS", "20"))
    burst = int(os.environ.get("OFFRAMP_BENCH_BURST", "15000"))
    steady = int(rate * seconds)
    total = steady + burst
    keep = os.environ.get("OFFRAMP_BENCH_LOGS")  # a folder to keep the services' logs in
    with provide_infra() as infra, tempfile.TemporaryDirectory() as scratch:
        logs = keep or scratch
        Path(logs).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
        suffix = new_suffix()
        database, namespace = f"offramp_bench_{suffix}", f"bench-{suffix}."
        await create_database(infra.database_url, database)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
            "DATABASE_URL": with_database(infra.database_url, database),
            "OFFRAMP_TOPIC_NAMESPACE": namespace,
            "OFFRAMP_LOG_FORMAT": "json",
            "OFFRAMP_LOG_LEVEL": os.environ.get("OFFRAMP_BENCH_LOG_LEVEL", "WARNING"),
            "OFFRAMP_EMAIL_PROVIDER": "log",
        }
        services = start_services(env, Path(logs))
        watcher = ExitWatcher(infra.kafka_bootstrap_servers, namespace)
        try:
            await wait_ready(services)
            say(f"services up on Kafka {infra.kafka_bootstrap_servers} ({infra.source})")
            async with OfframpClient(infra.kafka_bootstrap_servers, namespace) as client:
                await client.publish(
                    ApplyWorkflow.create(
                        account_id=ACCOUNT,
                        payload=ApplyWorkflowPayload(actor=USER, definition=WORKFLOW),
                    )
                )
                await eventually(
                    lambda: client.read_all(topics.WORKFLOW_EVENTS),
                    until=lambda docs: len(docs) == 1,
                    what="workflow.applied",
                )
                started = time.perf_counter()
                await enroll_all(client, total)
            await eventually(
                lambda: _count(env["DATABASE_URL"], "trigger_evaluator.enrollments"),
                until=lambda n: n >= total,
                timeout=600,
                interval=0.5,
                what=f"{total} enrollments projected by trigger-evaluator",
            )
            await eventually(
                lambda: _count(env["DATABASE_URL"], "scheduler.timers"),
                until=lambda n: n >= total,
                timeout=600,
                interval=0.5,
                what=f"{total} step timers held by the scheduler",
            )
            elapsed = time.perf_counter() - started
            say(f"enrolled {total} contacts in {elapsed:.1f}s ({total / elapsed:.0f}/s end to end)")

            await watcher.start()
            producer = AIOKafkaProducer(
                bootstrap_servers=infra.kafka_bootstrap_servers, linger_ms=2, acks="all"
            )
            await producer.start()
            try:
                sent = await publish_at_rate(producer, namespace, range(steady), rate)
                await eventually(
                    lambda: asyncio.sleep(0, len(watcher.arrived)),
                    until=lambda n: n >= steady,
                    timeout=120,
                    what="exits of the steady phase",
                )
                report_latency(watcher, sent, rate=rate, seconds=seconds)
                burst_start = time.perf_counter()
                await publish_at_rate(producer, namespace, range(steady, total), None)
                published = time.perf_counter() - burst_start
                await eventually(
                    lambda: asyncio.sleep(0, len(watcher.arrived)),
                    until=lambda n: n >= total,
                    timeout=600,
                    interval=0.2,
                    what="exits of the burst",
                )
                last = max(watcher.arrived[record_id(i)] for i in range(steady, total))
                took = last - burst_start
                say(
                    f"throughput: {burst} replies published in {published:.1f}s, all exited "
                    f"after {took:.1f}s: {burst / took:.0f} exits/s sustained"
                )
            finally:
                await producer.stop()
        finally:
            await watcher.stop()
            await asyncio.to_thread(stop_services, services)
            await drop_database(infra.database_url, database)
            await delete_topics(infra.kafka_bootstrap_servers, namespace)


async def _count(database_url: str, table: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def everything() -> None:
    await main()
    await bench_providers.main()
    await bench_sends.main()


if __name__ == "__main__":
    asyncio.run(everything())
