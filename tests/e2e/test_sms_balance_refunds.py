"""Issue 11 end to end, on the real broker and database with the services as processes: a
workflow pause refunds exactly the SMS segments its enrollments had reserved and not sent,
once each, and the account's balance is back where the credit put it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.messaging import segments
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
    PauseWorkflow,
    WorkflowCommandPayload,
)
from shared.contracts.inbound import Channel
from shared.contracts.sms_balance import CreditPayload, CreditSmsBalance
from shared.contracts.workflow import Step, WorkflowDefinition
from tests.conftest import SessionEnv, private_env
from tests.support.infra import Infra
from tests.support.kafka import TopicClient, of_type
from tests.support.processes import ServiceProcess, SmtpSink, running_services
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

ACCOUNT = "acct-sms"
USER = Actor(kind=ActorKind.USER, id="user-1")
CREDIT = 1_000
CONTACTS = 12
LATER = 3_600  # the second step waits an hour: still reserved, never sent, when the pause comes
BODY = "Hi {name}, your table for two is ready — reply YES to confirm, NO to cancel. € " * 2
WORKFLOW = WorkflowDefinition(
    workflow_id="wf-sms",
    name="SMS follow-up",
    record_type=RecordType.CONTACT,
    steps=(
        Step(step_id="later", channel=Channel.SMS, body=BODY, delay_seconds=LATER),
        Step(step_id="after", channel=Channel.SMS, body="Bye", delay_seconds=LATER),
    ),
)


@pytest.fixture
async def own_env(infra: Infra) -> AsyncIterator[SessionEnv]:
    async with private_env(infra) as env:
        yield env


@pytest.fixture
async def system(
    own_env: SessionEnv, tmp_path: Path
) -> AsyncIterator[tuple[SmtpSink, list[ServiceProcess]]]:
    async with running_services(own_env.service_env(), tmp_path) as running:
        yield running


def enroll(i: int) -> Enroll:
    record = f"c-{i:03d}"
    return Enroll.create(
        account_id=ACCOUNT,
        payload=EnrollPayload(
            workflow_id=WORKFLOW.workflow_id,
            record=RecordRef(type=RecordType.CONTACT, id=record),
            contact=ContactDetails(email=f"{record}@example.com", phone=f"+1415555{i:04d}"),
            actor=USER,
        ),
    )


async def fetch(env: SessionEnv, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(env.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_a_workflow_pause_refunds_exactly_the_unsent_segments_once(
    own_env: SessionEnv, system: tuple[SmtpSink, list[ServiceProcess]]
) -> None:
    _, services = system
    per_step = segments.count(BODY).segments
    assert per_step > 1  # a multi-part message: the refund counts parts, not messages
    async with TopicClient(own_env.kafka_bootstrap_servers, own_env.topic_namespace) as kafka:
        await kafka.publish(
            CreditSmsBalance.create(
                account_id=ACCOUNT,
                payload=CreditPayload(credit_id="top-up-1", segments=CREDIT, actor=USER),
            )
        )
        # An account is metered from its first credit: steps scheduled before it reserve
        # nothing (the credit and the steps travel on different topics).
        await eventually(
            lambda: fetch(
                own_env,
                "SELECT balance FROM messaging.sms_balances WHERE account_id = $1",
                ACCOUNT,
            ),
            until=lambda rows: bool(rows) and rows[0]["balance"] == CREDIT,
            what="the credit applied",
        )
        await kafka.publish(
            ApplyWorkflow.create(
                account_id=ACCOUNT, payload=ApplyWorkflowPayload(actor=USER, definition=WORKFLOW)
            )
        )
        # Reserving reads the step's body from messaging's projection of the workflow: a
        # step scheduled before it is reserved later, by the claim that sends it.
        await eventually(
            lambda: fetch(
                own_env,
                "SELECT 1 FROM messaging.workflow_steps WHERE account_id = $1",
                ACCOUNT,
            ),
            what="the workflow's steps projected in messaging",
        )
        for i in range(CONTACTS):
            await kafka.publish(enroll(i))
        reserved = await eventually(
            lambda: fetch(
                own_env,
                "SELECT balance FROM messaging.sms_balances WHERE account_id = $1",
                ACCOUNT,
            ),
            until=lambda rows: bool(rows) and rows[0]["balance"] == CREDIT - CONTACTS * per_step,
            what="every enrollment's first SMS reserved",
        )
        assert reserved[0]["balance"] == CREDIT - CONTACTS * per_step

        pause = PauseWorkflow.create(
            account_id=ACCOUNT,
            payload=WorkflowCommandPayload(workflow_id=WORKFLOW.workflow_id, actor=USER),
        )
        await kafka.publish(pause)
        await kafka.publish(pause)  # a duplicate of the command changes nothing
        refunded = await eventually(
            lambda: kafka.read_all(topics.MESSAGING_EVENTS),
            until=lambda docs: len(of_type(docs, "sms_balance.refunded")) >= CONTACTS,
            timeout=60,
            what="a refund per enrollment",
        )
        exits = of_type(await kafka.read_all(topics.ENROLLMENT_EVENTS), "enrollment.exited")

    refunds = [r["payload"] for r in of_type(refunded, "sms_balance.refunded")]
    exited = [e["payload"] for e in exits]
    assert len(refunds) == CONTACTS
    assert len(exited) == CONTACTS
    assert {r["enrollment_id"] for r in refunds} == {e["enrollment_id"] for e in exited}
    assert all(r["segments"] == per_step and r["step_index"] == 0 for r in refunds)
    assert {e["reason"] for e in exited} == {"workflow_paused"}
    (balance,) = await fetch(
        own_env, "SELECT balance FROM messaging.sms_balances WHERE account_id = $1", ACCOUNT
    )
    assert balance["balance"] == CREDIT
    (ledger,) = await fetch(
        own_env,
        "SELECT sum(delta) AS total, count(*) FILTER (WHERE kind = 'refund') AS refunds"
        " FROM messaging.sms_ledger WHERE account_id = $1",
        ACCOUNT,
    )
    assert (ledger["total"], ledger["refunds"]) == (CREDIT, CONTACTS)
    assert all(s.process.poll() is None for s in services), "a service crashed"
