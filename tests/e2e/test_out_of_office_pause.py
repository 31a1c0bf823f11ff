"""Issue 10 end to end, on the real broker and database with the services as processes:
an out-of-office reply pauses the enrollment instead of exiting it, until the return date
read from its body (plus the workflow's margin), and the enrollment resumes then."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest

from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics, utc_now
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
)
from shared.contracts.inbound import EmailHeader, EmailReplied, EmailRepliedPayload
from shared.contracts.trigger_settings import OutOfOfficeSettings
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from tests.e2e.conftest import System
from tests.support.kafka import TopicClient, of_type
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

ACCOUNT = "acc-e2e-ooo"
USER = Actor(kind=ActorKind.USER, id="user-1")
PAUSED_FOR = timedelta(seconds=15)
"""How long after the workflow is applied the pause ends: the return date is today, and
the workflow's margin is chosen to end the pause then (an injected clock, in effect)."""


async def test_an_out_of_office_reply_pauses_and_the_enrollment_resumes_after_its_return_date(
    system: System,
) -> None:
    test_env, sink, services = system
    now = utc_now()
    today = now.date()
    midnight = datetime.combine(today, time(), UTC)
    resume_at = now + PAUSED_FOR
    margin_hours = (resume_at - midnight).total_seconds() / 3600
    workflow = WorkflowDefinition(
        workflow_id="wf-ooo",
        name="OOO",
        record_type=RecordType.CONTACT,
        steps=(
            Step(step_id="intro", subject="Hello", body="Step one."),
            Step(step_id="again", delay_seconds=6, subject="Again", body="Step two."),
        ),
        settings=WorkflowSettings(
            exit_triggers=frozenset({ExitTrigger.REPLIED}),
            out_of_office=OutOfOfficeSettings(resume_margin_hours=margin_hours),
        ),
    )
    record = RecordRef(type=RecordType.CONTACT, id="c-ooo")
    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        await kafka.publish(
            ApplyWorkflow.create(
                account_id=ACCOUNT, payload=ApplyWorkflowPayload(actor=USER, definition=workflow)
            )
        )
        await kafka.publish(
            Enroll.create(
                account_id=ACCOUNT,
                payload=EnrollPayload(
                    workflow_id=workflow.workflow_id,
                    record=record,
                    contact=ContactDetails(email="olga@example.com"),
                    actor=USER,
                ),
            )
        )
        [first] = await eventually(
            lambda: asyncio.sleep(0, sink.to("olga@example.com")),
            until=lambda mails: len(mails) == 1,
            what="step 1 delivered to olga",
        )
        reply = EmailReplied.create(
            account_id=ACCOUNT,
            payload=EmailRepliedPayload(
                from_address="olga@example.com",
                message_header_id="<ooo-1@example.com>",
                in_reply_to=first["Message-ID"],
                subject="Automatic reply: Hello",
                headers=(EmailHeader(name="Auto-Submitted", value="auto-replied"),),
                body_excerpt=(
                    "Thank you for your message. I am out of the office and will be back in "
                    f"the office on {today.day} {today:%B %Y}."
                ),
            ),
        )
        await kafka.publish(reply)

        events = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: len(of_type(docs, "enrollment.completed")) == 1,
            timeout=PAUSED_FOR.total_seconds() + 40,
            what="the paused enrollment resumed and completed",
        )
        commands = await kafka.read_all(topics.COMMANDS)
    mine = [e for e in events if e["account_id"] == ACCOUNT]
    assert of_type(mine, "enrollment.exited") == []
    [paused] = of_type(mine, "enrollment.paused")
    assert paused["payload"]["reason"] == "out_of_office"
    until = datetime.fromisoformat(paused["payload"]["until"])
    assert abs(until - resume_at) < timedelta(seconds=1)
    [pause] = [c for c in of_type(commands, "enrollment.pause") if c["account_id"] == ACCOUNT]
    assert pause["causation_id"] == str(reply.message_id)
    assert pause["payload"]["triggering_event"]["message_id"] == str(reply.message_id)
    [resumed] = of_type(mine, "enrollment.resumed")
    assert datetime.fromisoformat(resumed["occurred_at"]) >= until
    assert [m["Subject"] for m in sink.to("olga@example.com")] == ["Hello", "Again"]
    # The pause is explainable: trigger-evaluator kept what it read and the planned resume.
    conn = await asyncpg.connect(test_env.database_url)
    try:
        [decision] = await conn.fetch(
            "SELECT decision, reason, why, resume_at FROM trigger_evaluator.decisions"
            " WHERE account_id = $1",
            ACCOUNT,
        )
    finally:
        await conn.close()
    assert (decision["decision"], decision["reason"]) == ("pause", "out_of_office")
    assert decision["resume_at"] == until
    assert "header Auto-Submitted: auto-replied" in decision["why"]
    assert f"back on {today.isoformat()}" in decision["why"]
    assert all(s.process.poll() is None for s in services), "a service crashed"
