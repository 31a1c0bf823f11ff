"""``make demo``: the skeleton flow against a running system, told step by step.

Apply a two-step email workflow, enroll a contact, wait for step 1 to be sent, reply to
it the way an email platform would (three times), and show that the enrollment exits once
and step 2 is never sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.client import OfframpClient, of_type
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
from shared.runenv import RunEnv, probe

ACCOUNT = "demo"
USER = Actor(kind=ActorKind.USER, id="demo-user")
STEP_2_DELAY_S = 8
WORKFLOW = WorkflowDefinition(
    workflow_id="wf-demo",
    name="Demo: two emails",
    record_type=RecordType.CONTACT,
    steps=(
        Step(step_id="hello", subject="Hello from Offramp", body="Step 1, sent at once."),
        Step(
            step_id="follow-up",
            delay_seconds=STEP_2_DELAY_S,
            subject="Following up",
            body="Step 2: never sent if you replied.",
        ),
    ),
    settings=WorkflowSettings(exit_triggers=frozenset({ExitTrigger.REPLIED})),
)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


async def wait_for(
    client: OfframpClient,
    topic: str,
    match: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 30.0,
    what: str,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for document in await client.read_all(topic):
            if match(document):
                return document
        await asyncio.sleep(0.2)
    raise SystemExit(f"demo: gave up after {timeout:.0f}s waiting for {what}; is `make run` up?")


async def wait_ready(running: RunEnv, *, timeout: float = 60.0) -> None:
    """Wait until every service ``make run`` started answers ready on its health port."""
    deadline = time.monotonic() + timeout
    pending = running.health_urls()
    while pending:
        for service, url in list(pending.items()):
            ok, _said = await asyncio.to_thread(probe, url)
            if ok:
                del pending[service]
        if not pending:
            break
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{s} ({u})" for s, u in pending.items())
            raise SystemExit(
                f"demo: gave up after {timeout:.0f}s waiting for {waiting} to be ready"
            )
        await asyncio.sleep(0.5)
    if running.health_urls():
        say("every service answers ready")


async def run_demo(
    bootstrap_servers: str, namespace: str, *, running: RunEnv | None = None
) -> None:
    if running is not None:
        await wait_ready(running)
    run = uuid.uuid4().hex[:6]
    record = RecordRef(type=RecordType.CONTACT, id=f"c-demo-{run}")
    email = f"ann+{run}@example.com"
    async with OfframpClient(bootstrap_servers, namespace) as client:
        await client.publish(
            ApplyWorkflow.create(
                account_id=ACCOUNT, payload=ApplyWorkflowPayload(actor=USER, definition=WORKFLOW)
            )
        )
        applied = await wait_for(
            client,
            topics.WORKFLOW_EVENTS,
            lambda d: (
                d["type"] == "workflow.applied"
                and d["payload"]["definition"]["workflow_id"] == WORKFLOW.workflow_id
            ),
            what="workflow.applied",
        )
        say(f"workflow {WORKFLOW.workflow_id} is at version {applied['payload']['version']}")

        await client.publish(
            Enroll.create(
                account_id=ACCOUNT,
                payload=EnrollPayload(
                    workflow_id=WORKFLOW.workflow_id,
                    record=record,
                    contact=ContactDetails(email=email),
                    actor=USER,
                ),
            )
        )
        say(f"enrolled contact {record.id} <{email}>")

        def ours(document: dict[str, Any]) -> bool:
            return bool(document["payload"].get("record") == record.model_dump(mode="json"))

        sent = await wait_for(
            client,
            topics.MESSAGING_EVENTS,
            lambda d: d["type"] == "message.sent" and ours(d),
            what="step 1 to be sent",
        )
        message_id = sent["payload"]["provider_message_id"]
        sink = (
            f" (the SMTP sink on port {running.smtp_port} printed it)"
            if running is not None and running.smtp_port
            else ""
        )
        say(f"step 1 sent over SMTP with Message-ID {message_id}{sink}")

        reply = EmailReplied.create(
            account_id=ACCOUNT,
            payload=EmailRepliedPayload(
                from_address=email,
                message_header_id=f"<reply-{run}@example.com>",
                in_reply_to=message_id,
                subject="Re: Hello from Offramp",
            ),
        )
        for _ in range(3):
            await client.publish(reply)
        say("published the same email.replied three times on offramp.inbound.email.v1")

        exited = await wait_for(
            client,
            topics.ENROLLMENT_EVENTS,
            lambda d: d["type"] == "enrollment.exited" and ours(d),
            what="enrollment.exited",
        )
        decided_ms = (
            datetime.fromisoformat(exited["occurred_at"]) - reply.occurred_at
        ).total_seconds() * 1000
        say(
            f"enrollment exited: reason={exited['payload']['reason']}"
            f" source={exited['payload']['source']}"
            f" (decided {decided_ms:.0f} ms after the reply was published)"
        )

        say(f"waiting {STEP_2_DELAY_S + 3}s, past the time step 2 was due...")
        await asyncio.sleep(STEP_2_DELAY_S + 3)
        events = await client.read_all(topics.ENROLLMENT_EVENTS)
        sends = await client.read_all(topics.MESSAGING_EVENTS)
    exits = [d for d in of_type(events, "enrollment.exited") if ours(d)]
    step_two = [
        d for d in of_type(sends, "message.sent") if ours(d) and d["payload"]["step_index"] == 1
    ]
    say(f"exits published for this enrollment: {len(exits)} (expected 1)")
    say(f"step 2 sends: {len(step_two)} (expected 0)")
    if len(exits) != 1 or step_two:
        raise SystemExit("demo: the flow did not behave as expected")
    say("done: one reply, one exit, no step 2.")
