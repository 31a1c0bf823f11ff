"""Issue 7 end to end, on the real broker and database with the services as processes:
an enroll published right behind its workflow's apply is never refused, and a pause until
T resumes at T with the next step sent once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics, utc_now
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
    Pause,
    PausePayload,
)
from shared.contracts.workflow import Step, WorkflowDefinition
from tests.conftest import SessionEnv
from tests.support.kafka import TopicClient, of_type
from tests.support.processes import (
    ServiceProcess,
    SmtpSink,
    running_services,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

USER = Actor(kind=ActorKind.USER, id="user-1")
BACK_TO_BACK = 200


@pytest.fixture
async def system(
    test_env: SessionEnv, tmp_path: Path
) -> AsyncIterator[tuple[SmtpSink, list[ServiceProcess]]]:
    async with running_services(test_env.service_env(), tmp_path) as running:
        yield running


def workflow(workflow_id: str, *delays_s: int) -> WorkflowDefinition:
    return WorkflowDefinition(
        workflow_id=workflow_id,
        name=workflow_id,
        record_type=RecordType.CONTACT,
        steps=tuple(
            Step(step_id=f"s{i}", subject=f"Step {i}", body="Hi", delay_seconds=delay)
            for i, delay in enumerate(delays_s)
        ),
    )


def apply(account: str, wf: WorkflowDefinition) -> ApplyWorkflow:
    return ApplyWorkflow.create(
        account_id=account, payload=ApplyWorkflowPayload(actor=USER, definition=wf)
    )


def enroll(account: str, workflow_id: str, record_id: str) -> Enroll:
    return Enroll.create(
        account_id=account,
        payload=EnrollPayload(
            workflow_id=workflow_id,
            record=RecordRef(type=RecordType.CONTACT, id=record_id),
            contact=ContactDetails(email=f"{record_id}@example.com"),
            actor=USER,
        ),
    )


def of_account(documents: list[dict[str, Any]], kind: str, account: str) -> list[dict[str, Any]]:
    return [d for d in of_type(documents, kind) if d["account_id"] == account]


async def test_apply_and_enroll_back_to_back_enroll_every_time(
    system: tuple[SmtpSink, list[ServiceProcess]], test_env: SessionEnv
) -> None:
    """Each enroll is published right behind its workflow's apply; they are keyed apart,
    so enrollment reads many of them first: all wait for their workflow, none is refused."""
    _, services = system
    account = "acc-e2e-early"
    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        for i in range(BACK_TO_BACK):
            wf = workflow(f"wf-early-{i}", 3600)  # no step is due during the test
            await kafka.publish_many(
                [apply(account, wf), enroll(account, wf.workflow_id, f"c-{i}")]
            )

        events = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: (
                len(of_account(docs, "enrollment.enrolled", account))
                + len(of_account(docs, "enrollment.rejected", account))
                >= BACK_TO_BACK
            ),
            timeout=60,
            what=f"{BACK_TO_BACK} enrollments answered",
        )
    enrolled = of_account(events, "enrollment.enrolled", account)
    assert of_account(events, "enrollment.rejected", account) == []
    assert sorted(e["payload"]["record"]["id"] for e in enrolled) == sorted(
        f"c-{i}" for i in range(BACK_TO_BACK)
    )
    assert all(s.process.poll() is None for s in services), "a service crashed"


async def test_a_pause_until_t_resumes_at_t_and_the_step_goes_out_once(
    system: tuple[SmtpSink, list[ServiceProcess]], test_env: SessionEnv
) -> None:
    sink, services = system
    account, record_id = "acc-e2e-pause", "c-paused"
    wf = workflow("wf-pause", 2, 1)  # step 0 two seconds after enrolling, step 1 a second later
    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        await kafka.publish(apply(account, wf))
        await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda docs: len(of_account(docs, "workflow.applied", account)) == 1,
            what="workflow.applied",
        )
        until: datetime = utc_now() + timedelta(seconds=5)
        record = RecordRef(type=RecordType.CONTACT, id=record_id)
        pause = Pause.create(
            account_id=account,
            payload=PausePayload(record=record, until=until, reason="ooo", actor=USER),
        )
        # The same record's key: the pause is read after the enroll, before step 0 is due.
        await kafka.publish_many([enroll(account, wf.workflow_id, record_id), pause])

        events = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: len(of_account(docs, "enrollment.completed", account)) == 1,
            timeout=40,
            what="the paused enrollment resumed and completed",
        )
        sent = of_account(await kafka.read_all(topics.MESSAGING_EVENTS), "message.sent", account)
        commands = await kafka.read_all(topics.COMMANDS)
    [paused] = of_account(events, "enrollment.paused", account)
    assert datetime.fromisoformat(paused["payload"]["until"]) == until
    [resumed] = of_account(events, "enrollment.resumed", account)
    assert resumed["payload"]["actor"]["kind"] == "system"
    [resume] = of_account(commands, "enrollment.resume", account)
    assert resume["payload"]["pause_id"] == paused["message_id"]
    assert resume["causation_id"] == paused["message_id"]
    # Step 0 went out once, at T or after (its own time, two seconds in, was inside the pause).
    assert [s["payload"]["step_index"] for s in sent] == [0, 1]
    assert datetime.fromisoformat(sent[0]["payload"]["sent_at"]) >= until
    assert [m["Subject"] for m in sink.to(f"{record_id}@example.com")] == ["Step 0", "Step 1"]
    assert all(s.process.poll() is None for s in services), "a service crashed"
