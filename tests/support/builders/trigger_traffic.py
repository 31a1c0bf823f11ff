"""Seeded random traffic for trigger-evaluator's batch tests on the real database:
enrollment lifecycles across two accounts sharing ids, a populated projection, and
inbound events about the people in it (some about no one)."""

from __future__ import annotations

import random
import uuid
from typing import Any

from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.projection import EnrollmentEvent
from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource
from shared.contracts.events import (
    CompletedPayload,
    EnrolledPayload,
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    ExitedPayload,
    MessageSent,
    MessageSentPayload,
    PausedPayload,
    ResumedPayload,
    WorkflowApplied,
)
from shared.contracts.inbound import (
    BounceKind,
    Channel,
    EmailBounced,
    EmailBouncedPayload,
    EmailLinkClicked,
    EmailLinkClickedPayload,
    EmailReplied,
    EmailRepliedPayload,
    MeetingBooked,
    MeetingBookedPayload,
)
from shared.contracts.workflow import ExitTrigger
from tests.support.builders.enrollment_events import ENROLLED_AT, USER
from tests.support.builders.enrollment_events import T0 as AT
from tests.support.builders.trigger_projection import workflow_applied

ACCOUNTS = ("acc-a", "acc-b")


def workflow(account_id: str, version: int, *, company: bool = False) -> WorkflowApplied:
    triggers = frozenset({ExitTrigger.REPLIED, ExitTrigger.LINK_CLICKED, ExitTrigger.HARD_BOUNCED})
    return workflow_applied(
        workflow_id="wf",
        version=version,
        triggers=triggers if version == 1 else frozenset(),
        unenroll_company_on_reply=company,
        account=account_id,
    )


def ref(enrollment_id: uuid.UUID, record_id: str, version: int = 1) -> dict[str, Any]:
    record = RecordRef(type=RecordType.CONTACT, id=record_id)
    return {
        "enrollment_id": enrollment_id,
        "workflow_id": "wf",
        "workflow_version": version,
        "record": record,
    }


def random_enrollment_event(
    rng: random.Random, enrollment_id: uuid.UUID, home: str, number: int
) -> EnrollmentEvent:
    # Now and then another account has the same id: its events are another enrollment's.
    account_id = home if rng.random() < 0.9 else next(a for a in ACCOUNTS if a != home)
    fields = ref(enrollment_id, f"c-{number}")
    kind = rng.choice(["enrolled", "enrolled", "paused", "resumed", "exited", "completed"])
    if kind == "enrolled":
        contact = ContactDetails(
            email=f"p{number}-{rng.randrange(3)}@dom{number % 5}.com",
            aliases=tuple(f"a{number}-{i}@alias.com" for i in range(rng.randrange(3))),
            company_domain=rng.choice([f" Dom{number % 5}.com ", None]),
        )
        actor = rng.choice([USER, Actor(kind=ActorKind.SYSTEM, id="offramp")])
        payload = EnrolledPayload(**fields, contact=contact, actor=actor)
        return EnrollmentEnrolled.create(account_id=account_id, payload=payload)
    if kind == "paused":
        paused = PausedPayload(**fields, reason="manual", actor=USER)
        return EnrollmentPaused.create(account_id=account_id, payload=paused)
    if kind == "resumed":
        resumed = ResumedPayload(**fields, actor=USER)
        return EnrollmentResumed.create(account_id=account_id, payload=resumed)
    if kind == "exited":
        exited = ExitedPayload(
            **fields,
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=USER,
            steps_completed=0,
        )
        return EnrollmentExited.create(account_id=account_id, payload=exited)
    completed = CompletedPayload(**fields, steps_completed=1)
    return EnrollmentCompleted.create(account_id=account_id, payload=completed)


def inbound_events(rng: random.Random, count: int) -> list[Message]:
    """Replies, clicks, bounces and meetings, each about one of 300 enrolled people."""
    events: list[Message] = []
    for _ in range(count):
        n = rng.randrange(320)  # some match no one
        account_id = rng.choice(ACCOUNTS)
        record = RecordRef(type=RecordType.CONTACT, id=f"c-{n}")
        address = rng.choice([f"p{n}@dom{n % 5}.com", f"a{n}-0@alias.com"])
        quoted = f"<m-{rng.randrange(400)}@offramp>"
        kind = rng.randrange(4)
        if kind == 0:
            payload = EmailRepliedPayload(
                from_address=address,
                message_header_id="<r@mail>",
                in_reply_to=quoted,
                record=record if rng.random() < 0.3 else None,
            )
            events.append(EmailReplied.create(account_id=account_id, payload=payload))
        elif kind == 1:
            click = EmailLinkClickedPayload(
                from_address=address, workflow_message_id=quoted, url="https://x"
            )
            events.append(EmailLinkClicked.create(account_id=account_id, payload=click))
        elif kind == 2:
            bounce = EmailBouncedPayload(
                from_address=address, bounce=BounceKind.HARD, record=record
            )
            events.append(EmailBounced.create(account_id=account_id, payload=bounce))
        else:
            other = RecordRef(type=RecordType.CONTACT, id=f"c-{rng.randrange(320)}")
            meeting = MeetingBookedPayload(record=record, attendees=(other,), via_message_id=quoted)
            events.append(MeetingBooked.create(account_id=account_id, payload=meeting))
    return events


async def populate(repository: TriggerEvaluatorStore, rng: random.Random) -> None:
    await repository.save_workflow_versions(
        [workflow(a, v, company=a == "acc-a") for a in ACCOUNTS for v in (1, 2)]
    )
    events: list[EnrollmentEvent] = []
    for n in range(300):
        enrollment_id = uuid.UUID(int=n + 1)
        account_id = ACCOUNTS[n % 2]
        contact = ContactDetails(
            email=f"p{n % 280}@dom{n % 5}.com",
            aliases=(f"a{n}-0@alias.com",) if n % 3 == 0 else (),
            company_domain=f"dom{n % 5}.com",
        )
        fields = ref(enrollment_id, f"c-{n % 250}", version=1 if n % 7 else 2)
        events.append(
            EnrollmentEnrolled.create(
                account_id=account_id,
                payload=EnrolledPayload(**fields, contact=contact, actor=USER),
                occurred_at=ENROLLED_AT,  # the same for the fake and PostgreSQL
            )
        )
        if n % 4 == 0:
            exited = ExitedPayload(
                **fields,
                reason=ExitReason.MANUAL,
                source=ExitSource.MANUAL,
                actor=USER,
                steps_completed=0,
            )
            events.append(EnrollmentExited.create(account_id=account_id, payload=exited))
    rng.shuffle(events)  # order between enrollments does not matter; ended stays ended
    await repository.save_enrollment_events(events)
    sent = [
        MessageSent.create(
            account_id=ACCOUNTS[n % 2],
            payload=MessageSentPayload(
                **ref(uuid.UUID(int=n + 1), f"c-{n % 250}"),
                step_index=0,
                step_id="hello",
                channel=Channel.EMAIL,
                provider_message_id=f"<m-{n}@offramp>",
                recipient="p@dom.com",
                sent_at=AT,
            ),
        )
        for n in range(0, 300, 2)
    ]
    await repository.save_sent_messages(sent)
