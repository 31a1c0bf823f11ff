"""End to end on the real broker and database: a ``workflow.migrate`` dry run says what
the migration then does, enrollment by enrollment, and the real run moves them."""

from __future__ import annotations

from typing import Any

import pytest

from shared.contracts import topics
from shared.contracts.migration import MigrateWorkflow, MigrateWorkflowPayload
from tests.conftest import SessionEnv
from tests.e2e.test_workflow_lifecycle import (
    USER,
    apply,
    enroll,
    of_account,
    own_env,
    system,
    workflow,
)
from tests.support.kafka import TopicClient
from tests.support.processes import ServiceProcess, SmtpSink
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

__all__ = ["own_env", "system"]  # the fixtures, shared with the lifecycle tests

RECORDS = ("c-m1", "c-m2", "c-m3")


def migrate(account: str, workflow_id: str, *, dry_run: bool) -> MigrateWorkflow:
    payload = MigrateWorkflowPayload(
        workflow_id=workflow_id,
        from_version=1,
        to_version=2,
        step_map=(0, None, 1),
        dry_run=dry_run,
        actor=USER,
    )
    return MigrateWorkflow.create(account_id=account, payload=payload)


def at_step_one(docs: list[dict[str, Any]], account: str) -> set[str]:
    return {
        d["payload"]["record"]["id"]
        for d in of_account(docs, "enrollment.step_scheduled", account)
        if d["payload"]["step_index"] == 1
    }


async def test_a_migrate_dry_run_matches_what_the_migration_then_does(
    system: tuple[SmtpSink, list[ServiceProcess]], own_env: SessionEnv
) -> None:
    account, workflow_id = "acc-e2e-migrate", "wf-migrate"
    async with TopicClient(own_env.kafka_bootstrap_servers, own_env.topic_namespace) as kafka:
        await kafka.publish(apply(account, workflow(workflow_id, 0, 3600, 7200)))
        await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda docs: len(of_account(docs, "workflow.applied", account)) == 1,
            what="version 1",
        )
        await kafka.publish_many([enroll(account, workflow_id, r) for r in RECORDS])
        await eventually(  # step 0 sent: each waits for step 1 (removed in version 2)
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: at_step_one(docs, account) == set(RECORDS),
            timeout=60,
            what="step 1 scheduled for every record",
        )
        await kafka.publish(apply(account, workflow(workflow_id, 0, 7200)))
        await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda docs: len(of_account(docs, "workflow.applied", account)) == 2,
            what="version 2",
        )
        await kafka.publish(migrate(account, workflow_id, dry_run=True))
        docs = await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda d: len(of_account(d, "workflow.migration_previewed", account)) == 1,
            what="the preview",
        )
        preview = of_account(docs, "workflow.migration_previewed", account)[0]["payload"]
        await kafka.publish(migrate(account, workflow_id, dry_run=False))
        docs = await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda d: len(of_account(d, "workflow.migrated", account)) == 1,
            what="the migration",
        )
        report = of_account(docs, "workflow.migrated", account)[0]["payload"]
        events = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda d: len(of_account(d, "enrollment.migrated", account)) == len(RECORDS),
            what="each enrollment migrated",
        )

    assert report["candidates"] == preview["candidates"]
    assert (report["moves"], report["skipped"]) == (len(RECORDS), 0)
    assert {(c["from_step"], c["outcome"], c["to_step"]) for c in report["candidates"]} == {
        (1, "moves", 1)
    }
    rearmed = [
        d["payload"]
        for d in of_account(events, "enrollment.step_scheduled", account)
        if d["payload"]["workflow_version"] == 2
    ]
    assert sorted(p["record"]["id"] for p in rearmed) == sorted(RECORDS)
    due = {c["enrollment_id"]: c["due_at"] for c in report["candidates"]}
    assert all(p["due_at"] == due[p["enrollment_id"]] for p in rearmed)
