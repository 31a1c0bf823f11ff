"""Send windows and send limits end to end: the services as processes (two messaging
replicas), the real broker and database, a real SMTP server.

- A step due while its workflow's send window is closed is published at the window's next
  opening (in the record's time zone) and not sent now.
- A rolling 24-hour send limit shared by two messaging replicas: exactly the limit goes
  out, the rest wait pending (nothing dropped) with the sender marked full; the queue per
  sender shows them. (What happens when capacity frees, a day later, and the due order,
  are checked with an injected clock in ``tests/integration/test_send_limits_replicas.py``:
  here the steps reach the replicas through different partitions, so which ones were
  queued before the capacity ran out is a race.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from shared.contracts.workflow import (
    SendWindow,
    Step,
    Weekday,
    WorkflowDefinition,
    WorkflowSettings,
)
from tests.conftest import SessionEnv
from tests.integration.test_quarantine_cli import offramp
from tests.support.kafka import TopicClient, of_type
from tests.support.processes import ServiceProcess, SmtpSink, running_services
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

USER = Actor(kind=ActorKind.USER, id="user-1")
LIMIT = 5
CONTACTS = 12
DEFAULT_SENDER = "outreach@offramp.local"


@pytest.fixture
async def system(
    test_env: SessionEnv, tmp_path: Path
) -> AsyncIterator[tuple[SmtpSink, list[ServiceProcess]]]:
    limits = f'{{"acc-limited": {LIMIT}}}'
    async with running_services(
        test_env.service_env(), tmp_path, replicas=("messaging",), OFFRAMP_SEND_LIMITS=limits
    ) as running:
        yield running


def workflow(settings: WorkflowSettings) -> WorkflowDefinition:
    return WorkflowDefinition(
        workflow_id="wf-e2e",
        name="Sending rules",
        record_type=RecordType.CONTACT,
        steps=(Step(step_id="intro", subject="Hello", body="Step one."),),
        settings=settings,
    )


def apply(account: str, definition: WorkflowDefinition) -> ApplyWorkflow:
    return ApplyWorkflow.create(
        account_id=account, payload=ApplyWorkflowPayload(actor=USER, definition=definition)
    )


def enroll(account: str, n: int, time_zone: str | None = None) -> Enroll:
    return Enroll.create(
        account_id=account,
        payload=EnrollPayload(
            workflow_id="wf-e2e",
            record=RecordRef(type=RecordType.CONTACT, id=f"c-{n}"),
            contact=ContactDetails(email=f"{account}-{n}@example.com", time_zone=time_zone),
            actor=USER,
        ),
    )


async def fetch(test_env: SessionEnv, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(test_env.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_a_step_due_outside_the_window_is_planned_at_the_next_opening_and_not_sent(
    system: tuple[SmtpSink, list[ServiceProcess]], test_env: SessionEnv
) -> None:
    sink, _ = system
    account = f"acc-window-{uuid.uuid4().hex[:6]}"
    zone = ZoneInfo("Australia/Lord_Howe")
    # Open one hour a day, starting two hours from now (local): closed right now.
    opens = (datetime.now(UTC).astimezone(zone) + timedelta(hours=2)).replace(
        minute=0, second=0, microsecond=0
    )
    if opens.hour == 23 or opens.hour < 2:  # keep start < end on the same local day
        opens = opens.replace(hour=3)
    window = SendWindow(
        weekdays=frozenset(Weekday),
        start=opens.time(),
        end=opens.time().replace(hour=opens.hour + 1),
        time_zone="UTC",
    )
    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        await kafka.publish(apply(account, workflow(WorkflowSettings(send_window=window))))
        await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda docs: any(d["account_id"] == account for d in docs),
            what="workflow.applied",
        )
        await kafka.publish(enroll(account, 1, time_zone="Australia/Lord_Howe"))
        docs = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: any(
                d["account_id"] == account for d in of_type(docs, "enrollment.step_scheduled")
            ),
            what="enrollment.step_scheduled",
        )
    [scheduled] = [
        d["payload"]
        for d in of_type(docs, "enrollment.step_scheduled")
        if d["account_id"] == account
    ]
    due_at = datetime.fromisoformat(scheduled["due_at"])
    unplanned = datetime.fromisoformat(scheduled["unplanned_at"])
    assert due_at > unplanned
    local = due_at.astimezone(zone)
    assert (local.hour, local.minute) == (window.start.hour, window.start.minute)
    rows = await fetch(
        test_env,
        "SELECT time_zone FROM enrollment.enrollments WHERE account_id = $1",
        account,
    )
    assert [r["time_zone"] for r in rows] == ["Australia/Lord_Howe"]
    assert sink.to(f"{account}-1@example.com") == []


async def test_two_messaging_replicas_send_exactly_the_limit_and_keep_the_rest_waiting(
    system: tuple[SmtpSink, list[ServiceProcess]], test_env: SessionEnv
) -> None:
    sink, _ = system
    account = "acc-limited"
    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        await kafka.publish(apply(account, workflow(WorkflowSettings())))
        await eventually(
            lambda: kafka.read_all(topics.WORKFLOW_EVENTS),
            until=lambda docs: any(d["account_id"] == account for d in docs),
            what="workflow.applied",
        )
        for n in range(CONTACTS):
            await kafka.publish(enroll(account, n))

    # Every step is granted and queued; the limit's worth went out and the sender is full.
    def settled(rows: list[asyncpg.Record]) -> bool:
        counts: dict[str, int] = {r["status"]: r["n"] for r in rows}
        return counts.get("sent", 0) == LIMIT and counts.get("pending", 0) == CONTACTS - LIMIT

    await eventually(
        lambda: fetch(
            test_env,
            """SELECT status, count(*) AS n FROM messaging.sends
               WHERE account_id = $1 GROUP BY status""",
            account,
        ),
        until=settled,
        timeout=60,
        what=f"{LIMIT} sent and {CONTACTS - LIMIT} pending",
    )
    [quota] = await fetch(
        test_env,
        "SELECT sender, blocked_until FROM messaging.send_quotas WHERE account_id = $1",
        account,
    )
    assert quota["sender"] == DEFAULT_SENDER
    assert quota["blocked_until"] > datetime.now(UTC) + timedelta(hours=23)
    used = await fetch(
        test_env, "SELECT count(*) AS n FROM messaging.send_usage WHERE account_id = $1", account
    )
    assert used[0]["n"] == LIMIT
    delivered = [m for n in range(CONTACTS) for m in sink.to(f"{account}-{n}@example.com")]
    assert len(delivered) == LIMIT
    code, out, _ = await offramp(
        test_env.database_url, "sends", "queue", "--account", account, "--json"
    )
    assert code == 0
    [queue] = [json.loads(line) for line in out.splitlines()]
    assert (queue["sender"], queue["waiting"], queue["used_24h"]) == (
        DEFAULT_SENDER,
        CONTACTS - LIMIT,
        LIMIT,
    )
    assert queue["full_until"] is not None
