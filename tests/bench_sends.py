"""``make bench``, sends end to end: steps/s from enroll to the provider, through the four
services (scheduler timer, enrollment grant, messaging claim, provider call, outcome).

Starts the services on the local Kafka and PostgreSQL (a private database and topic
namespace) with messaging's SMTP relay a local sink and its SMS provider a local
Twilio-compatible HTTP server (both in this process), enrolls
``OFFRAMP_BENCH_SEND_EMAILS`` contacts (default 3000) into a one-email workflow and
``OFFRAMP_BENCH_SEND_SMS`` (default 3000) into a one-SMS workflow, both steps due at
once, and reports how fast the messages reached the sink and the server (from the first
message received to the last, and from the first enroll published). One messaging
replica; ``python -m tests.bench_sends`` runs this part alone.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from shared.client import OfframpClient
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
)
from shared.contracts.inbound import Channel
from shared.contracts.workflow import Step, WorkflowDefinition
from tests.support.http_provider import http_provider
from tests.support.infra import provide_infra
from tests.support.isolation import (
    create_database,
    delete_topics,
    drop_database,
    new_suffix,
    with_database,
)
from tests.support.processes import free_port, start_services, stop_services, wait_ready
from tests.support.waiting import eventually

ACCOUNT = "bench-sends"
USER = Actor(kind=ActorKind.USER, id="bench")
BODY = "Hi, do you have a minute this week? " * 3
EMAIL_WORKFLOW = WorkflowDefinition(
    workflow_id="wf-email",
    name="One email",
    record_type=RecordType.CONTACT,
    steps=(Step(step_id="hello", subject="Quick question", body=BODY),),
)
SMS_WORKFLOW = WorkflowDefinition(
    workflow_id="wf-sms",
    name="One SMS",
    record_type=RecordType.CONTACT,
    steps=(Step(step_id="ping", channel=Channel.SMS, body=BODY, sender="+15550100"),),
)


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


class TimedSink:
    """Counts emails and notes when the first and last arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:  # noqa: N802
        self.arrivals.append(time.perf_counter())
        return "250 Message accepted for delivery"


def enroll(workflow: WorkflowDefinition, i: int) -> Enroll:
    record = f"{workflow.workflow_id}-{i:07d}"
    phone = f"+1415555{i % 10000:04d}" if workflow is SMS_WORKFLOW else None
    return Enroll.create(
        account_id=ACCOUNT,
        payload=EnrollPayload(
            workflow_id=workflow.workflow_id,
            record=RecordRef(type=RecordType.CONTACT, id=record),
            contact=ContactDetails(email=f"{record}@example.com", phone=phone),
            actor=USER,
        ),
    )


def rate(count: int, first: float, last: float) -> str:
    took = max(last - first, 1e-9)
    return f"{count} in {took:.1f}s ({count / took:.0f}/s)"


async def main() -> None:
    emails = int(os.environ.get("OFFRAMP_BENCH_SEND_EMAILS", "3000"))
    sms = int(os.environ.get("OFFRAMP_BENCH_SEND_SMS", "3000"))
    if not emails and not sms:
        return
    sink, smtp_port = TimedSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    with provide_infra() as infra, tempfile.TemporaryDirectory() as logs:
        async with http_provider() as server:
            arrivals = server.answered_at
            suffix = new_suffix()
            database, namespace = f"offramp_bench_{suffix}", f"bench-{suffix}."
            await create_database(infra.database_url, database)
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
                "DATABASE_URL": with_database(infra.database_url, database),
                "OFFRAMP_TOPIC_NAMESPACE": namespace,
                "OFFRAMP_LOG_FORMAT": "json",
                "OFFRAMP_LOG_LEVEL": os.environ.get("OFFRAMP_BENCH_LOG_LEVEL", "WARNING"),
                "OFFRAMP_EMAIL_PROVIDER": "smtp",
                "OFFRAMP_SMTP_HOST": "127.0.0.1",
                "OFFRAMP_SMTP_PORT": str(smtp_port),
                "OFFRAMP_SMS_PROVIDER": "twilio",
                "OFFRAMP_TWILIO_BASE_URL": server.url,
                "OFFRAMP_TWILIO_ACCOUNT_SID": "ACbench",
                "OFFRAMP_TWILIO_AUTH_TOKEN": "bench",
            }
            services = start_services(env, Path(logs))
            try:
                await wait_ready(services)
                async with OfframpClient(infra.kafka_bootstrap_servers, namespace) as client:
                    for workflow in (EMAIL_WORKFLOW, SMS_WORKFLOW):
                        definition = ApplyWorkflowPayload(actor=USER, definition=workflow)
                        await client.publish(
                            ApplyWorkflow.create(account_id=ACCOUNT, payload=definition)
                        )
                    await eventually(
                        lambda: client.read_all(topics.WORKFLOW_EVENTS),
                        until=lambda docs: len(docs) == 2,
                        what="both workflow.applied",
                    )
                    started = time.perf_counter()
                    await client.publish_many(
                        [enroll(EMAIL_WORKFLOW, i) for i in range(emails)]
                        + [enroll(SMS_WORKFLOW, i) for i in range(sms)]
                    )
                    published = time.perf_counter() - started
                    await eventually(
                        lambda: asyncio.sleep(0, (len(sink.arrivals), len(arrivals))),
                        until=lambda n: n[0] >= emails and n[1] >= sms,
                        timeout=900,
                        interval=0.5,
                        what=f"{emails} emails and {sms} SMS delivered",
                    )
                say(f"sends end to end: {emails + sms} enrolls published in {published:.1f}s")
                if emails:
                    say(
                        f"emails through SMTP (services, one replica): "
                        f"{rate(emails, sink.arrivals[0], sink.arrivals[-1])} between the "
                        f"first and last received; {rate(emails, started, sink.arrivals[-1])} "
                        "from the first enroll"
                    )
                if sms:
                    say(
                        f"SMS through the HTTP provider (services, one replica): "
                        f"{rate(sms, arrivals[0], arrivals[-1])} between the first and last "
                        f"received; {rate(sms, started, arrivals[-1])} from the first enroll"
                    )
                everything = sorted(sink.arrivals + arrivals)
                say(
                    f"all sends: {rate(len(everything), everything[0], everything[-1])} "
                    "between the first and last received (target in mind: 2,000 steps/s)"
                )
            finally:
                await asyncio.to_thread(stop_services, services)
                await drop_database(infra.database_url, database)
                await delete_topics(infra.kafka_bootstrap_servers, namespace)
                controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
