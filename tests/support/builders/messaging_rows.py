"""Builders of what messaging's store keeps: workflow steps, projected enrollments, sends."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.messaging.domain import Send, WorkflowStep
from services.messaging.projection import EnrollmentStatus, EnrollmentView
from shared.contracts import RecordRef, RecordType
from shared.contracts.inbound import Channel

ACCOUNT = "acc"
OTHER_ACCOUNT = "other-acc"
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")


def view(
    enrollment_id: uuid.UUID,
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE,
    *,
    email: str | None = "ada@example.com",
    phone: str | None = None,
    workflow_id: str = "wf",
    account: str = ACCOUNT,
) -> EnrollmentView:
    return EnrollmentView(
        enrollment_id=enrollment_id,
        account_id=account,
        workflow_id=workflow_id,
        workflow_version=1,
        record=CONTACT,
        status=status,
        recipient_email=email,
        recipient_phone=phone,
    )


def wf_step(index: int, step_id: str, *, version: int = 1, account: str = ACCOUNT) -> WorkflowStep:
    return WorkflowStep(
        account_id=account,
        workflow_id="wf",
        version=version,
        step_index=index,
        step_id=step_id,
        channel=Channel.EMAIL,
        subject=None,
        body=f"body {step_id}",
        sender=None,
    )


def send(
    enrollment_id: uuid.UUID,
    step_index: int = 0,
    account: str = ACCOUNT,
    *,
    lease_until: datetime | None = None,
    dispatch_id: uuid.UUID | None = None,
) -> Send:
    """A send; with ``lease_until``, under a grant (``dispatch_id``, or a fixed one per
    enrollment and step), else a row queued before grants existed."""
    if lease_until is not None and dispatch_id is None:
        dispatch_id = uuid.uuid5(enrollment_id, f"dispatch-{step_index}")
    return Send(
        enrollment_id=enrollment_id,
        step_index=step_index,
        account_id=account,
        workflow_id="wf",
        workflow_version=1,
        record=CONTACT,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        sender="from@example.com",
        subject="Hi",
        body="Hello",
        provider_message_id=f"<{enrollment_id}.{step_index}@test>",
        cause_message_id=uuid.uuid4(),
        correlation_id=None,
        dispatch_id=dispatch_id,
        lease_until=lease_until,
    )
