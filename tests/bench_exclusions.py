"""``make bench`` (exclusions part): how fast a rule change and a record change exit.

1. rule change: OFFRAMP_BENCH_EXCL_ENROLLED (100,000) live enrollments, one in ten a
   customer; a *remove* rule on customers is applied by enrollment's handler on the real
   PostgreSQL, in one transaction as the consumer runs it; the time to its commit is the
   time to the last exit (the outbox relay publishes the exits right after).
2. record change: the enrollment service as a process; OFFRAMP_BENCH_EXCL_RATE (500)
   ``record.upserted`` events per second for OFFRAMP_BENCH_EXCL_SECONDS (10), each making
   an enrolled contact match the rule; for each, the time until its ``enrollment.exited``
   is read back.

Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.enrollment.exclusion_handlers import rule_commands
from services.enrollment.ports import EnrollmentStore
from services.enrollment.repository import PostgresEnrollmentStore
from shared.client import OfframpClient
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import ApplyWorkflow, ApplyWorkflowPayload
from shared.contracts.exclusions import (
    Condition,
    ConditionGroup,
    ExclusionRuleDefinition,
    PutExclusionRule,
    PutRulePayload,
    RuleAction,
)
from shared.contracts.inbound import RecordUpserted, RecordUpsertedPayload
from shared.contracts.workflow import Step, WorkflowDefinition
from shared.migrations import migrate
from shared.uow import UnitOfWork
from tests.bench import ExitWatcher
from tests.support.infra import REPO, provide_infra
from tests.support.isolation import (
    create_database,
    delete_topics,
    drop_database,
    new_suffix,
    with_database,
)
from tests.support.processes import start_service, stop_services, wait_ready
from tests.support.waiting import eventually

ACCOUNT = "bench-excl"
USER = Actor(kind=ActorKind.USER, id="bench")
WORKFLOW = WorkflowDefinition(
    workflow_id="wf-bench",
    name="Bench",
    record_type=RecordType.CONTACT,
    steps=(Step(step_id="s1", body="Hi", delay_seconds=86_400),),
)
RULE = ExclusionRuleDefinition(
    rule_id="r-customers",
    name="Customers",
    action=RuleAction.REMOVE,
    when=ConditionGroup(
        conditions=(Condition(field="lifecyclestage", operator="is", value="customer"),)
    ),
)


def say(text: str) -> None:
    print(f"[bench-exclusions] {text}", flush=True)


async def seed(conn: asyncpg.Connection, enrolled: int) -> None:
    """``enrolled`` live enrollments of contacts ``c-N``; every tenth a customer."""
    await conn.execute(
        """INSERT INTO workflow_versions (account_id, workflow_id, version, definition,
                                          definition_hash, applied_by)
           VALUES ($1, $2, 1, $3::jsonb, 'h', '{}'::jsonb)""",
        ACCOUNT,
        WORKFLOW.workflow_id,
        WORKFLOW.model_dump_json(),
    )
    await conn.execute(
        """INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
               record_type, record_id, contact, status, current_step, enrolled_by, enrolled_at,
               next_due_at)
           SELECT gen_random_uuid(), $1, $2, 1, 'contact', 'c-' || n,
                  jsonb_build_object('email', 'p' || n || '@bench.io'), 'active', 0,
                  '{}'::jsonb, now(), now() + interval '1 day'
           FROM generate_series(1, $3) AS n""",
        ACCOUNT,
        WORKFLOW.workflow_id,
        enrolled,
    )
    await conn.execute(
        """INSERT INTO crm_records (account_id, record_type, record_id, fields, email)
           SELECT $1, 'contact', 'c-' || n,
                  jsonb_build_object('lifecyclestage',
                                     CASE WHEN n % 10 = 0 THEN 'customer' ELSE 'lead' END),
                  'p' || n || '@bench.io'
           FROM generate_series(1, $2) AS n""",
        ACCOUNT,
        enrolled,
    )
    await conn.execute("ANALYZE")


async def rule_change(database_url: str, enrolled: int) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "enrollment"})
    try:
        await migrate(
            conn, schema="enrollment", service_dir=REPO / "services/enrollment/migrations"
        )
        await seed(conn, enrolled)
        say(f"seeded {enrolled} live enrollments, {enrolled // 10} of them customers")
        command = PutExclusionRule.create(
            account_id=ACCOUNT, payload=PutRulePayload(actor=USER, definition=RULE)
        )
        started = time.perf_counter()
        async with conn.transaction():
            store: EnrollmentStore = PostgresEnrollmentStore(conn, version_cache={})
            uow = UnitOfWork(conn, store)
            await rule_commands(uow, [command], datetime.now(UTC))
        took = time.perf_counter() - started
        exits = sum(1 for m in uow.outgoing if m.topic.endswith(topics.ENROLLMENT_EVENTS))
        say(f"rule change: {exits} exits decided and committed in {took:.2f}s")
    finally:
        await conn.close()


async def record_changes(infra_url: str, kafka: str, rate: int, seconds: int) -> None:
    suffix = new_suffix()
    database, namespace = f"offramp_bench_{suffix}", f"bench-{suffix}."
    await create_database(infra_url, database)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "DATABASE_URL": with_database(infra_url, database),
        "OFFRAMP_TOPIC_NAMESPACE": namespace,
        "OFFRAMP_LOG_FORMAT": "json",
        "OFFRAMP_LOG_LEVEL": "WARNING",
    }
    count = rate * seconds
    service = start_service("enrollment", env, Path(tempfile.mkdtemp()))
    try:
        await wait_ready([service])
        async with OfframpClient(kafka, namespace) as client:
            await client.publish(
                ApplyWorkflow.create(
                    account_id=ACCOUNT,
                    payload=ApplyWorkflowPayload(actor=USER, definition=WORKFLOW),
                )
            )
            await client.publish(
                PutExclusionRule.create(
                    account_id=ACCOUNT, payload=PutRulePayload(actor=USER, definition=RULE)
                )
            )
            conn = await asyncpg.connect(env["DATABASE_URL"])
            try:
                await eventually(
                    lambda: conn.fetchval("SELECT count(*) FROM enrollment.exclusion_rules"),
                    until=lambda n: n == 1,
                    what="the rule",
                )
                await conn.execute("SET search_path TO enrollment")
                await conn.execute(
                    """INSERT INTO enrollments (enrollment_id, account_id, workflow_id,
                           workflow_version, record_type, record_id, status, current_step,
                           enrolled_by, enrolled_at)
                       SELECT gen_random_uuid(), $1, $2, 1, 'contact', 'c-' || n, 'active', 0,
                              '{}'::jsonb, now() FROM generate_series(1, $3) AS n""",
                    ACCOUNT,
                    WORKFLOW.workflow_id,
                    count,
                )
            finally:
                await conn.close()
            watcher = ExitWatcher(kafka, namespace)
            await watcher.start()
            try:
                sent: dict[str, float] = {}
                interval = 1 / rate
                start = time.perf_counter()
                for n in range(1, count + 1):
                    event = RecordUpserted.create(
                        account_id=ACCOUNT,
                        payload=RecordUpsertedPayload(
                            record=RecordRef(type=RecordType.CONTACT, id=f"c-{n}"),
                            fields={"lifecyclestage": "customer"},
                        ),
                    )
                    sent[f"c-{n}"] = time.perf_counter()
                    await client.publish(event)
                    delay = start + n * interval - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await eventually(
                    lambda: asyncio.sleep(0, len(watcher.arrived)),
                    until=lambda n: n >= count,
                    timeout=300,
                    what="every exit",
                )
                arrived = dict(watcher.arrived)
            finally:
                await watcher.stop()
        latencies = sorted(arrived[k] - sent[k] for k in sent if k in arrived)
        say(
            f"record change at {rate}/s for {seconds}s: {len(latencies)} exits; latency p50 "
            f"{statistics.median(latencies) * 1000:.0f} ms, p99 "
            f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, max "
            f"{latencies[-1] * 1000:.0f} ms (publish to exit read back)"
        )
    finally:
        await asyncio.to_thread(stop_services, [service])
        await drop_database(infra_url, database)
        await delete_topics(kafka, namespace)


async def main() -> None:
    enrolled = int(os.environ.get("OFFRAMP_BENCH_EXCL_ENROLLED", "100000"))
    rate = int(os.environ.get("OFFRAMP_BENCH_EXCL_RATE", "500"))
    seconds = int(os.environ.get("OFFRAMP_BENCH_EXCL_SECONDS", "10"))
    with provide_infra() as infra:
        suffix = new_suffix()
        database = f"offramp_bench_{suffix}"
        await create_database(infra.database_url, database)
        try:
            await rule_change(with_database(infra.database_url, database), enrolled)
        finally:
            await drop_database(infra.database_url, database)
        if rate > 0:
            await record_changes(infra.database_url, infra.kafka_bootstrap_servers, rate, seconds)


if __name__ == "__main__":
    asyncio.run(main())
