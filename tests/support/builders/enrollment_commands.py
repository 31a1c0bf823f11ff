"""Builders of what the enrollment service consumes: its commands, and messaging's
``message.sent``; and of the workflow definitions they name."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from shared.contracts import SYSTEM_ACTOR, Actor, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
    Exit,
    ExitPayload,
    ExitReason,
    ExitSource,
    Pause,
    PausePayload,
    Resume,
    ResumePayload,
    TriggeringEvent,
)
from shared.contracts.events import (
    CancelReason,
    EnrollmentEnrolled,
    FailureKind,
    MessageCancelled,
    MessageCancelledPayload,
    MessageFailed,
    MessageFailedPayload,
    MessageSent,
    MessageSentPayload,
)
from shared.contracts.inbound import Channel
from shared.contracts.workflow import Step, WorkflowDefinition, WorkflowSettings
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER

ALICE = RecordRef(type=RecordType.CONTACT, id="c-1")
BOB = RecordRef(type=RecordType.CONTACT, id="c-2")


def definition(
    *delays_h: int, workflow_id: str = "onboarding", **settings: Any
) -> WorkflowDefinition:
    """A contact workflow whose steps wait ``delays_h`` hours each (0 and 24 by default)."""
    return WorkflowDefinition(
        workflow_id=workflow_id,
        name="Onboarding",
        record_type=RecordType.CONTACT,
        steps=tuple(
            Step(step_id=f"s{i}", body="Hi", delay_seconds=h * 3600)
            for i, h in enumerate(delays_h or (0, 24))
        ),
        settings=WorkflowSettings(**settings),
    )


def apply_cmd(wf: WorkflowDefinition, account_id: str = ACCOUNT) -> ApplyWorkflow:
    return ApplyWorkflow.create(
        account_id=account_id, payload=ApplyWorkflowPayload(actor=USER, definition=wf)
    )


def enroll_cmd(
    record: RecordRef = ALICE,
    workflow_id: str = "onboarding",
    account_id: str = ACCOUNT,
    message_id: uuid.UUID | None = None,
    phone: str | None = None,
) -> Enroll:
    payload = EnrollPayload(
        workflow_id=workflow_id,
        record=record,
        contact=ContactDetails(email=f"{record.id}@acme.com", phone=phone),
        actor=USER,
    )
    return Enroll.create(account_id=account_id, payload=payload, message_id=message_id)


def exit_cmd(
    record: RecordRef = ALICE,
    *,
    workflow_id: str | None = "onboarding",
    source: ExitSource = ExitSource.TRIGGER,
    actor: Actor = SYSTEM_ACTOR,
    account_id: str = ACCOUNT,
) -> Exit:
    trigger = TriggeringEvent(
        message_id=uuid.uuid4(), type="email.replied", topic=topics.INBOUND_EMAIL, occurred_at=T0
    )
    payload = ExitPayload(
        record=record,
        workflow_id=workflow_id,
        reason=ExitReason.REPLIED,
        source=source,
        actor=actor,
        triggering_event=trigger,
    )
    return Exit.create(account_id=account_id, payload=payload)


def pause_cmd(record: RecordRef = ALICE, account_id: str = ACCOUNT) -> Pause:
    payload = PausePayload(record=record, until=T0 + timedelta(days=14), reason="ooo", actor=USER)
    return Pause.create(account_id=account_id, payload=payload)


def resume_cmd(record: RecordRef = ALICE, account_id: str = ACCOUNT) -> Resume:
    return Resume.create(account_id=account_id, payload=ResumePayload(record=record, actor=USER))


def sent_evt(
    enrolled: EnrollmentEnrolled, step_index: int, sent_at: datetime, account_id: str = ACCOUNT
) -> MessageSent:
    """Messaging sent step ``step_index`` of the enrollment ``enrolled`` announced."""
    p = enrolled.payload
    payload = MessageSentPayload(
        enrollment_id=p.enrollment_id,
        workflow_id=p.workflow_id,
        workflow_version=p.workflow_version,
        record=p.record,
        step_index=step_index,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        provider_message_id=f"<m-{step_index}@offramp.test>",
        recipient="c-1@acme.com",
        sent_at=sent_at,
    )
    return MessageSent.create(account_id=account_id, payload=payload)


def failed_evt(
    enrolled: EnrollmentEnrolled,
    step_index: int = 0,
    kind: FailureKind = FailureKind.HARD_BOUNCE,
    account_id: str = ACCOUNT,
) -> MessageFailed:
    """Messaging gave up on step ``step_index`` of ``enrolled`` for good."""
    p = enrolled.payload
    payload = MessageFailedPayload(
        enrollment_id=p.enrollment_id,
        workflow_id=p.workflow_id,
        workflow_version=p.workflow_version,
        record=p.record,
        step_index=step_index,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        recipient="c-1@acme.com",
        kind=kind,
        reason="550 5.1.1 <c-1@acme.com>: Recipient address rejected",
        attempts=1,
        failed_at=T0,
    )
    return MessageFailed.create(account_id=account_id, payload=payload)


def cancelled_evt(
    enrolled: EnrollmentEnrolled,
    step_index: int = 0,
    reason: CancelReason = CancelReason.NO_RECIPIENT,
    account_id: str = ACCOUNT,
) -> MessageCancelled:
    """Messaging did not send step ``step_index`` of ``enrolled``, for ``reason``."""
    p = enrolled.payload
    payload = MessageCancelledPayload(
        enrollment_id=p.enrollment_id,
        workflow_id=p.workflow_id,
        workflow_version=p.workflow_version,
        record=p.record,
        step_index=step_index,
        step_id=f"s{step_index}",
        reason=reason,
    )
    return MessageCancelled.create(account_id=account_id, payload=payload)
