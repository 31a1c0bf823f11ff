"""No message goes out after its enrollment's exit is committed (issue 7), end to end: the
four services as processes on the real broker and database, a real SMTP server.

Each of ``OFFRAMP_RACE_RECORDS`` contacts gets step 0 at once and step 1
``STEP_1_DELAY_S`` later; once its step 1 is scheduled, an ``enrollment.exit`` for it is
published at an instant spread evenly over ``OFFRAMP_RACE_WINDOW_MS`` around that step's
due time, so hundreds of exits land while their step is being dispatched. Step 2 is an
hour away: every enrollment is still live when its exit arrives, so each exits once.

A step 1 whose MAIL FROM reached the SMTP server after its enrollment's
``enrollment.exited`` was stamped is a violation (see ``tests/support/exit_race.py`` for
why that errs towards one).

A database and topic namespace of their own: what this reads back is only this test's.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
)
from shared.contracts.workflow import Step, WorkflowDefinition
from tests.e2e.conftest import System
from tests.support.exit_race import ExitRacer, racing, spread, tally
from tests.support.groups import Groups
from tests.support.kafka import TopicClient, of_type
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

RECORDS = int(os.environ.get("OFFRAMP_RACE_RECORDS", "400"))
"""How many enrollments race their exit against their step 1 (each is one race)."""
WINDOW_MS = tuple(
    float(edge) for edge in os.environ.get("OFFRAMP_RACE_WINDOW_MS", "-300,300").split(",")
)
"""Exits are published between these two offsets (ms) from step 1's due time."""
SEED = int(os.environ.get("OFFRAMP_RACE_SEED", "7"))
STEP_1_DELAY_S = 2
ACCOUNT = "acc-race"
USER = Actor(kind=ActorKind.USER, id="user-race")
WORKFLOW = WorkflowDefinition(
    workflow_id="wf-race",
    name="Exit racing dispatch",
    record_type=RecordType.CONTACT,
    steps=(
        Step(step_id="s0", subject="S0", body="Step zero."),
        Step(step_id="s1", delay_seconds=STEP_1_DELAY_S, subject="S1", body="Step one."),
        Step(step_id="s2", delay_seconds=3600, subject="S2", body="Never due in the test."),
    ),
)


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


async def test_no_step_goes_out_after_its_enrollments_exit_is_committed(system: System) -> None:
    env, sink, services = system
    started = time.monotonic()
    low, high = WINDOW_MS
    record_ids = [f"r-{n}" for n in range(RECORDS)]
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
        racer = ExitRacer(
            kafka,
            ACCOUNT,
            WORKFLOW.workflow_id,
            step_index=1,
            actor=USER,
            offsets=spread(record_ids, (low / 1000, high / 1000), SEED),
        )
        async with racing(racer):
            await kafka.publish_many([enroll(record_id) for record_id in record_ids])
            # The racer reads the exits too: nothing else reads topics while exits are timed.
            await eventually(
                lambda: asyncio.sleep(0, (racer.published, len(racer.exited))),
                until=lambda counts: counts == (RECORDS, RECORDS),
                timeout=75,
                interval=0.25,
                what=f"{RECORDS} exits published and applied (published, exited)",
            )
    groups = Groups(env.kafka_bootstrap_servers, env.topic_namespace)
    await groups.settle()  # every send under way has ended in an outcome
    result = tally(
        racer,
        record_ids,
        await groups.read_all(topics.ENROLLMENT_EVENTS),
        await groups.read_all(topics.MESSAGING_EVENTS),
        list(sink.deliveries),
        subject="S1",
        later_subject="S2",
    )
    summary = (
        f"{result.summary()}; window {low:+.0f}..{high:+.0f} ms around step 1's due time, "
        f"seed {SEED}, {time.monotonic() - started:.1f} s"
    )
    print(summary)

    worst = sorted(result.violations.items(), key=lambda item: -item[1])[:10]
    assert result.violations == {}, f"{summary}; latest sends (record, ms after exit): {worst}"
    assert result.exits_missing == [], summary
    assert result.exits_doubled == [], summary
    assert result.sent_without_exit == [], summary
    assert result.sent_twice == [], summary
    assert result.later_step_sent == [], summary
    assert result.sent_before_exit + result.not_sent == RECORDS, summary
    assert all(s.process.poll() is None for s in services), "a service crashed"
