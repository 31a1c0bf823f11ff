"""The walking skeleton end to end: four service processes, the real broker and database,
a real SMTP server. A reply to step 1 exits the enrollment once, and step 2 never goes out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
)
from shared.contracts.inbound import EmailReplied, EmailRepliedPayload
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from tests.conftest import SessionEnv
from tests.support.kafka import TopicClient, of_type
from tests.support.processes import (
    ServiceProcess,
    SmtpSink,
    running_services,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

ACCOUNT = "acc-e2e"
USER = Actor(kind=ActorKind.USER, id="user-1")
STEP_2_DELAY_S = 4
WORKFLOW = WorkflowDefinition(
    workflow_id="wf-onboarding",
    name="Onboarding",
    record_type=RecordType.CONTACT,
    steps=(
        Step(step_id="intro", subject="Hello", body="Step one."),
        Step(step_id="follow-up", delay_seconds=STEP_2_DELAY_S, subject="Again", body="Step two."),
    ),
    settings=WorkflowSettings(exit_triggers=frozenset({ExitTrigger.REPLIED})),
)


@pytest.fixture
async def system(
    test_env: SessionEnv, tmp_path: Path
) -> AsyncIterator[tuple[SmtpSink, list[ServiceProcess]]]:
    async with running_services(test_env.service_env(), tmp_path) as running:
        yield running


def enroll(record_id: str, email: str) -> Enroll:
    return Enroll.create(
        account_id=ACCOUNT,
        payload=EnrollPayload(
            workflow_id=WORKFLOW.workflow_id,
            record=RecordRef(type=RecordType.CONTACT, id=record_id),
            contact=ContactDetails(email=email),
            actor=USER,
        ),
    )


async def fetch(test_env: SessionEnv, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(test_env.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_a_reply_exits_once_and_step_two_is_never_sent(
    system: tuple[SmtpSink, list[ServiceProcess]], test_env: SessionEnv
) -> None:
    sink, services = system
    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        await kafka.publish(
            ApplyWorkflow.create(
                account_id=ACCOUNT, payload=ApplyWorkflowPayload(actor=USER, definition=WORKFLOW)
            )
        )
        await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda docs: len(of_type(docs, "workflow.applied")) == 1,
            what="workflow.applied",
        )

        await kafka.publish(enroll("c-ann", "ann@example.com"))
        step_one = await eventually(
            lambda: asyncio.sleep(0, sink.to("ann@example.com")),
            until=lambda mails: len(mails) == 1,
            what="step 1 delivered to ann over SMTP",
        )
        assert step_one[0]["Subject"] == "Hello"
        message_id_header = step_one[0]["Message-ID"]

        # A control contact enrolled now has its step 2 due after ann's would have been.
        await kafka.publish(enroll("c-bob", "bob@example.com"))

        reply = EmailReplied.create(
            account_id=ACCOUNT,
            payload=EmailRepliedPayload(
                from_address="ann@example.com",
                message_header_id="<reply-1@example.com>",
                in_reply_to=message_id_header,
                subject="Re: Hello",
            ),
        )
        # Garbage on the inbound topic first: it is dead-lettered, and nothing stops.
        await kafka.publish_raw(topics.INBOUND_EMAIL, b"{oops", key=f"{ACCOUNT}/contact/c-ann")
        for _ in range(3):  # the upstream platform delivers the same reply three times
            await kafka.publish(reply)

        exited = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: len(of_type(docs, "enrollment.exited")) >= 1,
            what="enrollment.exited",
        )
        exit_event = of_type(exited, "enrollment.exited")[0]["payload"]
        assert exit_event["record"] == {"type": "contact", "id": "c-ann"}
        assert exit_event["reason"] == "replied"
        assert exit_event["source"] == "trigger"
        assert exit_event["triggering_event"]["message_id"] == str(reply.message_id)
        assert exit_event["steps_completed"] == 1

        # Bob's step 2 arrives, so ann's step 2 was due earlier and had every chance.
        await eventually(
            lambda: asyncio.sleep(0, sink.to("bob@example.com")),
            until=lambda mails: len(mails) == 2,
            timeout=STEP_2_DELAY_S + 30,
            what="the control contact's step 2",
        )
        assert [m["Subject"] for m in sink.to("ann@example.com")] == ["Hello"]

        dead = await kafka.read_all(topics.DEAD_LETTER)
        events = await kafka.read_all(topics.ENROLLMENT_EVENTS)
        commands = await kafka.read_all(topics.COMMANDS)
        sent = await kafka.read_all(topics.MESSAGING_EVENTS)
    ann_exits = [
        e for e in of_type(events, "enrollment.exited") if e["payload"]["record"]["id"] == "c-ann"
    ]
    assert len(ann_exits) == 1
    assert len(of_type(commands, "enrollment.exit")) == 1
    ann_sends = [
        s for s in of_type(sent, "message.sent") if s["payload"]["recipient"] == "ann@example.com"
    ]
    assert [s["payload"]["step_index"] for s in ann_sends] == [0]

    rows = await fetch(
        test_env,
        "SELECT status, exit_reason, steps_completed FROM enrollment.enrollments"
        " WHERE record_id = $1",
        "c-ann",
    )
    assert [tuple(r) for r in rows] == [("exited", "replied", 1)]
    timers = await fetch(
        test_env,
        "SELECT step_index, state FROM scheduler.timers t JOIN enrollment.enrollments e"
        " USING (enrollment_id) WHERE e.record_id = $1 ORDER BY step_index",
        "c-ann",
    )
    assert [tuple(t) for t in timers] == [(0, "fired"), (1, "cancelled")]
    # Both consumers of the email topic (trigger-evaluator; enrollment, for suppressions)
    # dead-letter the garbage, each once.
    assert sorted((d["payload"]["consumer"], d["payload"]["error_kind"]) for d in dead) == [
        ("offramp-enrollment", "invalid_json"),
        ("offramp-trigger-evaluator", "invalid_json"),
    ]
    assert all(s.process.poll() is None for s in services), "a service crashed"
