"""Traffic for the fault tests, and the final state read back from the public topics.

A ``Cohort`` is one account's workflow and contacts: ``exiters`` get an inbound event
that takes them out (a reply, a page visit, a booked meeting or a chat message, in turn),
``controls`` get nothing and must run their due steps. What happened is read back only
from what Offramp publishes (enrollment and messaging events, dead letters) and from the
SMTP server, and counted per enrollment.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from typing import Any

from shared.client import OfframpClient, of_type
from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
)
from shared.contracts.inbound import (
    Channel,
    ConversationMessagePayload,
    ConversationMessageReceived,
    EmailEventPayload,
    EmailOpened,
    EmailReplied,
    EmailRepliedPayload,
    MeetingBooked,
    MeetingBookedPayload,
    PageVisited,
    PageVisitedPayload,
)
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from tests.support.groups import Groups
from tests.support.processes import SmtpSink
from tests.support.waiting import eventually

SCALE = max(1, int(os.environ.get("OFFRAMP_FAULT_SCALE", "1")))
"""``make soak`` sets OFFRAMP_FAULT_SCALE to multiply every scenario's volume."""


def scaled(count: int) -> int:
    return count * SCALE


USER = Actor(kind=ActorKind.USER, id="user-fault")
STEP_1_DELAY_S = 6
"""Step 1 is due this long after step 0 was sent: inside every fault window's reach."""
EXIT_TOPICS = (
    topics.INBOUND_EMAIL,
    topics.INBOUND_WEB,
    topics.INBOUND_CRM,
    topics.INBOUND_CONVERSATION,
)


def workflow_definition(workflow_id: str = "wf-fault", label: str = "") -> WorkflowDefinition:
    """Step 0 at once, step 1 after ``STEP_1_DELAY_S``, step 2 an hour later (never due
    during a test). Subjects are ``<label>S<index>``, so each mail tells its step."""
    return WorkflowDefinition(
        workflow_id=workflow_id,
        name=f"Fault {label}{workflow_id}",
        record_type=RecordType.CONTACT,
        steps=(
            Step(step_id="s0", subject=f"{label}S0", body="Step zero."),
            Step(step_id="s1", delay_seconds=STEP_1_DELAY_S, subject=f"{label}S1", body="One."),
            Step(step_id="s2", delay_seconds=3600, subject=f"{label}S2", body="Two."),
        ),
        settings=WorkflowSettings(
            exit_triggers=frozenset(
                {
                    ExitTrigger.REPLIED,
                    ExitTrigger.PAGE_VISITED,
                    ExitTrigger.MEETING_BOOKED,
                    ExitTrigger.MESSAGE_RECEIVED,
                }
            )
        ),
    )


@dataclass(frozen=True)
class Contact:
    record_id: str
    email: str

    @property
    def ref(self) -> RecordRef:
        return RecordRef(type=RecordType.CONTACT, id=self.record_id)

    def key(self, account_id: str) -> str:
        return self.ref.key(account_id)


def contacts(prefix: str, count: int) -> list[Contact]:
    return [Contact(f"{prefix}-{n}", f"{prefix}-{n}@example.com") for n in range(count)]


@dataclass(frozen=True)
class Cohort:
    account: str
    exiters: tuple[Contact, ...]
    controls: tuple[Contact, ...]
    definition: WorkflowDefinition = field(default_factory=workflow_definition)
    label: str = ""

    @classmethod
    def of(cls, account: str, exiters: int, controls: int, *, label: str = "") -> Cohort:
        return cls(
            account,
            tuple(contacts("x", exiters)),
            tuple(contacts("c", controls)),
            workflow_definition(label=label),
            label,
        )

    @property
    def everyone(self) -> tuple[Contact, ...]:
        return (*self.exiters, *self.controls)

    def subject(self, step: int) -> str:
        return f"{self.label}S{step}"

    def apply(self, message_id: uuid.UUID | None = None) -> ApplyWorkflow:
        return ApplyWorkflow.create(
            account_id=self.account,
            message_id=message_id,
            payload=ApplyWorkflowPayload(actor=USER, definition=self.definition),
        )

    def enroll(self, contact: Contact, message_id: uuid.UUID | None = None) -> Enroll:
        return Enroll.create(
            account_id=self.account,
            message_id=message_id,
            payload=EnrollPayload(
                workflow_id=self.definition.workflow_id,
                record=contact.ref,
                contact=ContactDetails(email=contact.email),
                actor=USER,
            ),
        )

    def exit_topic(self, contact: Contact) -> str:
        """The inbound topic whose event takes ``contact`` out (each exiter has one)."""
        return EXIT_TOPICS[self.exiters.index(contact) % len(EXIT_TOPICS)]

    def exit_event(
        self, contact: Contact, topic: str | None = None, message_id: uuid.UUID | None = None
    ) -> Message:
        """An inbound event on ``topic`` (default: the contact's own) that exits ``contact``."""
        ref, account = contact.ref, self.account
        payloads: dict[str, tuple[type[Message], Any]] = {
            topics.INBOUND_EMAIL: (
                EmailReplied,
                EmailRepliedPayload(
                    record=ref,
                    from_address=contact.email,
                    message_header_id=f"<reply-{contact.record_id}@example.com>",
                    subject="Re: hello",
                ),
            ),
            topics.INBOUND_WEB: (PageVisited, PageVisitedPayload(record=ref, url="https://x/p")),
            topics.INBOUND_CRM: (MeetingBooked, MeetingBookedPayload(record=ref, attendees=(ref,))),
            topics.INBOUND_CONVERSATION: (
                ConversationMessageReceived,
                ConversationMessagePayload(
                    record=ref, channel=Channel.CHAT, conversation_id=f"conv-{contact.record_id}"
                ),
            ),
        }
        model, payload = payloads[topic or self.exit_topic(contact)]
        return model.create(account_id=account, payload=payload, message_id=message_id)

    def harmless_event(self, contact: Contact, message_id: uuid.UUID | None = None) -> Message:
        """An inbound event that never exits anyone (opens are not a trigger)."""
        return EmailOpened.create(
            account_id=self.account,
            message_id=message_id,
            payload=EmailEventPayload(record=contact.ref, from_address=contact.email),
        )


@dataclass
class Observed:
    """Everything Offramp published and sent, at one moment."""

    workflow_events: list[dict[str, Any]]
    enrollment_events: list[dict[str, Any]]
    messaging_events: list[dict[str, Any]]
    commands: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    mails: list[EmailMessage]

    @classmethod
    async def read(cls, groups: Groups, sink: SmtpSink) -> Observed:
        return cls(
            await groups.read_all(topics.WORKFLOW_EVENTS),
            await groups.read_all(topics.ENROLLMENT_EVENTS),
            await groups.read_all(topics.MESSAGING_EVENTS),
            await groups.read_all(topics.COMMANDS),
            await groups.read_all(topics.DEAD_LETTER),
            list(sink.messages),
        )

    def per_record(self, documents: list[dict[str, Any]], kind: str, account: str) -> Counter[str]:
        """Distinct ``kind`` messages per record id. A message re-published with its own
        message_id (at-least-once relay after a crash) is one fact, counted once."""
        return Counter(
            record_id
            for record_id, _ in {
                (d["payload"]["record"]["id"], d["message_id"])
                for d in of_type(documents, kind)
                if d.get("account_id") == account
            }
        )

    def exits(self, account: str) -> Counter[str]:
        return self.per_record(self.enrollment_events, "enrollment.exited", account)

    def enrolled(self, account: str) -> Counter[str]:
        return self.per_record(self.enrollment_events, "enrollment.enrolled", account)

    def sent(self, account: str) -> Counter[tuple[str, int]]:
        """Distinct ``message.sent`` facts per (record id, step index)."""
        return Counter(
            (record_id, step)
            for record_id, step, _ in {
                (d["payload"]["record"]["id"], d["payload"]["step_index"], d["message_id"])
                for d in of_type(self.messaging_events, "message.sent")
                if d.get("account_id") == account
            }
        )

    def mails_to(self, contact: Contact, subject: str, forgiven: Collection[str] = ()) -> int:
        """Deliveries to ``contact`` with ``subject``; a ``forgiven`` Message-ID (a counted
        re-send after a crash, which SMTP cannot tell from the first) counts once."""
        ids = [
            str(m["Message-ID"])
            for m in self.mails
            if m["To"] == contact.email and m["Subject"] == subject
        ]
        return len(ids) - sum(1 for mid in set(ids) if mid in forgiven and ids.count(mid) == 2)

    def doubled_message_ids(self, forgiven: Collection[str] = ()) -> list[str]:
        counts = Counter(str(m["Message-ID"]) for m in self.mails)
        return sorted(
            mid for mid, n in counts.items() if n > 1 and not (mid in forgiven and n == 2)
        )

    def problems(self, cohort: Cohort, *, resent_after_crash: Collection[str] = ()) -> list[str]:
        """Every way this state differs from what ``cohort`` must end in (empty: none).

        Exiters: enrolled once, exited exactly once, step 0 mailed once, step 1 at most
        once (it may be due before a delayed exit lands). Controls: enrolled once, never
        exited, steps 0 and 1 mailed exactly once. Nobody gets step 2 (an hour away), no
        step is reported sent twice, no Message-ID reaches the SMTP server twice, except
        once more for each of ``resent_after_crash``: sends that messaging re-sent, counted
        and logged, after a crash between their provider call and its record (SMTP cannot
        say whether it took the first).
        """
        account, found = cohort.account, []
        enrolled, exits, sent = self.enrolled(account), self.exits(account), self.sent(account)
        for contact in cohort.everyone:
            rid, exiter = contact.record_id, contact in cohort.exiters
            mails = [
                self.mails_to(contact, cohort.subject(step), resent_after_crash)
                for step in range(3)
            ]
            expected_exits = 1 if exiter else 0
            if enrolled[rid] != 1:
                found.append(f"{account}/{rid}: enrolled {enrolled[rid]} times, expected 1")
            if exits[rid] != expected_exits:
                found.append(f"{account}/{rid}: exited {exits[rid]} times, not {expected_exits}")
            if mails[0] != 1 or mails[2] != 0 or mails[1] > 1 or (not exiter and mails[1] != 1):
                found.append(f"{account}/{rid}: steps 0/1/2 mailed {mails} times")
            doubled = {step: n for (r, step), n in sent.items() if r == rid and n > 1}
            if doubled:
                found.append(f"{account}/{rid}: message.sent more than once for steps {doubled}")
        strangers = set(exits) - {c.record_id for c in cohort.everyone}
        if strangers:
            found.append(f"{account}: exits of records never enrolled: {sorted(strangers)}")
        if doubled_ids := self.doubled_message_ids(resent_after_crash):
            found.append(f"Message-IDs delivered more than once: {doubled_ids[:10]}")
        return found


class Driver:
    """Drives cohorts through the public topics and waits on what comes back."""

    def __init__(self, client: OfframpClient, groups: Groups, sink: SmtpSink) -> None:
        self.client = client
        self.groups = groups
        self.sink = sink

    async def apply(self, cohort: Cohort, message_id: uuid.UUID | None = None) -> None:
        await self.client.publish(cohort.apply(message_id))
        await eventually(
            lambda: self.groups.read_all(topics.WORKFLOW_EVENTS),
            until=lambda docs: any(
                d.get("account_id") == cohort.account
                and d["payload"]["definition"]["workflow_id"] == cohort.definition.workflow_id
                for d in of_type(docs, "workflow.applied")
            ),
            timeout=60,
            interval=0.3,
            what=f"workflow.applied for {cohort.account}",
        )

    async def enroll(self, cohort: Cohort, people: Sequence[Contact]) -> None:
        await self.client.publish_many([cohort.enroll(contact) for contact in people])

    def mailed(self, cohort: Cohort, people: Sequence[Contact], step: int) -> list[str]:
        """Who of ``people`` has not received step ``step`` yet."""
        subject = cohort.subject(step)
        got = {m["To"] for m in self.sink.messages if m["Subject"] == subject}
        return [c.email for c in people if c.email not in got]

    async def await_step(
        self, cohort: Cohort, people: Sequence[Contact], step: int, *, timeout: float = 90.0
    ) -> None:
        await eventually(
            lambda: asyncio.sleep(0, self.mailed(cohort, people, step)),
            until=lambda missing: not missing,
            timeout=timeout,
            interval=0.2,
            what=f"step {step} mailed to {len(people)} contacts of {cohort.account}",
        )

    async def trigger_exits(self, cohort: Cohort, people: Sequence[Contact]) -> None:
        await self.client.publish_many([cohort.exit_event(contact) for contact in people])

    async def await_exits(
        self, cohort: Cohort, people: Sequence[Contact], *, timeout: float = 90.0
    ) -> None:
        wanted = {c.record_id for c in people}
        await eventually(
            lambda: self.groups.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: (
                wanted
                <= {
                    d["payload"]["record"]["id"]
                    for d in of_type(docs, "enrollment.exited")
                    if d.get("account_id") == cohort.account
                }
            ),
            timeout=timeout,
            interval=0.5,
            what=f"{len(wanted)} exits in {cohort.account}",
        )

    async def observe(self) -> Observed:
        return await Observed.read(self.groups, self.sink)


def waves(people: Sequence[Contact], count: int) -> list[list[Contact]]:
    return [list(people[k::count]) for k in range(count)]


async def run_in_waves(
    driver: Driver,
    groups: Groups,
    cohort: Cohort,
    count: int,
    disrupt: Callable[[int], Awaitable[None]],
) -> None:
    """Take ``cohort`` through its whole flow in ``count`` waves, calling ``disrupt(k)``
    mid-stream in wave ``k``: while its enrollments are being mailed and the previous
    wave's exits are being decided. Returns once every exit and due step is in and the
    system has gone quiet."""
    exiters, controls = waves(cohort.exiters, count), waves(cohort.controls, count)
    previous: list[Contact] = []
    for k in range(count):
        people = [*exiters[k], *controls[k]]
        await driver.enroll(cohort, people)
        await driver.trigger_exits(cohort, previous)
        await eventually(
            functools.partial(asyncio.to_thread, driver.mailed, cohort, people, 0),
            until=functools.partial(_some_mailed, len(people)),
            timeout=60,
            interval=0.05,
            what=f"the first step 0 of wave {k}",
        )
        await disrupt(k)
        await driver.await_step(cohort, people, 0)
        await groups.caught_up("trigger_evaluator")
        previous = exiters[k]
    await driver.trigger_exits(cohort, previous)
    await driver.await_exits(cohort, cohort.exiters)
    await driver.await_step(cohort, cohort.controls, 1)
    await groups.settle()


def _some_mailed(wave_size: int, missing: list[str]) -> bool:
    return len(missing) < wave_size
