"""Events that arrive before what they concern, end to end: the four services as processes
on the real broker and database. A reply published just before or 5 ms after its contact's
enroll exits the enrollment once; a reply from before the enrollment began does not; a reply
nobody's enrollment ever matches is dead-lettered once it has waited OFFRAMP_PARK_MAX_S.

A database and topic namespace of their own: what this reads back from the topics is only
this test's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

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
from shared.contracts.inbound import EmailReplied, EmailRepliedPayload
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from tests.conftest import SessionEnv, private_env
from tests.support.infra import Infra
from tests.support.kafka import TopicClient, of_type
from tests.support.processes import (
    ServiceProcess,
    running_services,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

ACCOUNT = "acc-early"
USER = Actor(kind=ActorKind.USER, id="user-1")
PARK_MAX_S = 4
WORKFLOW = WorkflowDefinition(
    workflow_id="wf-early",
    name="Early events",
    record_type=RecordType.CONTACT,
    steps=(
        Step(step_id="intro", subject="Hello", body="Step one."),
        Step(step_id="later", delay_seconds=3600, subject="Again", body="Step two."),
    ),
    settings=WorkflowSettings(exit_triggers=frozenset({ExitTrigger.REPLIED})),
)


System = tuple[SessionEnv, list[ServiceProcess]]


@pytest.fixture
async def system(infra: Infra, tmp_path: Path) -> AsyncIterator[System]:
    async with (
        private_env(infra) as own,
        running_services(own.service_env(), tmp_path, OFFRAMP_PARK_MAX_S=str(PARK_MAX_S)) as (
            _sink,
            services,
        ),
    ):
        yield own, services
        assert all(s.process.poll() is None for s in services), "a service crashed"


def enroll(record_id: str) -> Enroll:
    return Enroll.create(
        account_id=ACCOUNT,
        payload=EnrollPayload(
            workflow_id=WORKFLOW.workflow_id,
            record=RecordRef(type=RecordType.CONTACT, id=record_id),
            contact=ContactDetails(email=f"{record_id}@example.com"),
            actor=USER,
        ),
    )


def reply(record_id: str, *, minutes_ago: float = 0) -> EmailReplied:
    return EmailReplied.create(
        account_id=ACCOUNT,
        occurred_at=utc_now() - timedelta(minutes=minutes_ago),
        payload=EmailRepliedPayload(
            from_address=f"{record_id}@example.com",
            message_header_id=f"<reply-{record_id}@example.com>",
            subject="Re: Hello",
        ),
    )


async def fetch(env: SessionEnv, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(env.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def exits_of(events: list[dict[str, Any]], record_id: str) -> list[dict[str, Any]]:
    return [
        e["payload"]
        for e in of_type(events, "enrollment.exited")
        if e["payload"]["record"]["id"] == record_id
    ]


async def test_replies_racing_their_enroll_exit_it_and_older_or_unmatched_ones_do_not(
    system: System,
) -> None:
    env, services = system
    async with TopicClient(env.kafka_bootstrap_servers, env.topic_namespace) as kafka:
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
        await eventually(  # trigger-evaluator knows the workflow exits on replies
            lambda: fetch(env, "SELECT 1 FROM trigger_evaluator.workflow_versions"),
            what="the workflow version projected in trigger-evaluator",
        )

        before = reply("c-before")
        await kafka.publish(before)
        await eventually(  # the reply is read, and parked, before the enroll is published
            lambda: fetch(
                env,
                "SELECT 1 FROM trigger_evaluator.parked_events WHERE inbound_message_id = $1",
                before.message_id,
            ),
            what="the reply to c-before parked in trigger-evaluator",
        )
        await kafka.publish(enroll("c-before"))
        await kafka.publish(enroll("c-after"))
        await asyncio.sleep(0.005)  # the scenario itself: the reply 5 ms after its enroll
        after = reply("c-after")
        await kafka.publish(after)
        await kafka.publish(enroll("c-old"))
        await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: (
                len(exits_of(docs, "c-before")) == 1 and len(exits_of(docs, "c-after")) == 1
            ),
            what="c-before and c-after exited",
        )
        await eventually(
            lambda: fetch(
                env, "SELECT 1 FROM trigger_evaluator.enrollments WHERE record_id = 'c-old'"
            ),
            what="c-old projected in trigger-evaluator",
        )
        old = reply("c-old", minutes_ago=60)  # late, or replayed: from before c-old enrolled
        nobody = reply("c-nobody")
        await kafka.publish(old)
        await kafka.publish(nobody)

        dead = await eventually(
            lambda: kafka.read_all(topics.DEAD_LETTER),
            until=lambda docs: len(docs) >= 1,
            timeout=PARK_MAX_S + 30,
            what="the unmatched reply dead-lettered after waiting",
        )
        events = await kafka.read_all(topics.ENROLLMENT_EVENTS)
        commands = await kafka.read_all(topics.COMMANDS)

    for record_id, event in (("c-before", before), ("c-after", after)):
        (exit_event,) = exits_of(events, record_id)
        assert exit_event["reason"] == "replied"
        assert exit_event["triggering_event"]["message_id"] == str(event.message_id)
    assert exits_of(events, "c-old") == []
    assert len(of_type(commands, "enrollment.exit")) == 2

    decisions = await fetch(
        env,
        "SELECT inbound_message_id, enrollment_id IS NOT NULL AS about_one, decision, why"
        " FROM trigger_evaluator.decisions",
    )
    why = {
        row["inbound_message_id"]: (row["about_one"], row["decision"], row["why"])
        for row in decisions
    }
    assert why[old.message_id][:2] == (True, "ignored")
    assert "before the enrollment began" in why[old.message_id][2]
    assert why[nobody.message_id] == (
        False,
        "ignored",
        f"released after waiting {PARK_MAX_S} s: "
        "no enrollment of the account matched the event yet",
    )

    (letter,) = dead
    payload = letter["payload"]
    assert (payload["error_kind"], payload["message_id"]) == (
        "parking_expired",
        str(nobody.message_id),
    )
    assert payload["consumer"] == "offramp-trigger-evaluator"
    assert payload["source_topic"] == env.topic_namespace + topics.INBOUND_EMAIL
    assert await fetch(env, "SELECT 1 FROM trigger_evaluator.parked_events") == []
    (evaluator,) = [s for s in services if s.name == "trigger_evaluator"]
    parked = [
        line for line in evaluator.log_path.read_text().splitlines() if "inbound_parked" in line
    ]
    assert any(str(before.message_id) in line for line in parked)  # it did arrive first
    inbox = await fetch(
        env,
        "SELECT outcome FROM trigger_evaluator.inbox WHERE message_id = $1",
        str(nobody.message_id),
    )
    assert [row["outcome"] for row in inbox] == ["dead_lettered"]  # so a replay applies it
