"""Builders of what messaging consumes besides the enrollment events of
``enrollment_events``: workflow versions, granted steps and revoked grants, an enrolled
contact with its address, a resume; and the settings its handlers are built with."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.messaging.config import MessagingSettings
from shared.contracts import RecordType, derived_message_id
from shared.contracts.commands import ContactDetails, ExitReason
from shared.contracts.events import (
    DispatchRevokedPayload,
    EnrolledPayload,
    EnrollmentDispatchRevoked,
    EnrollmentEnrolled,
    EnrollmentResumed,
    EnrollmentStepGranted,
    ResumedPayload,
    StepGrantedPayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import (
    Channel,
    DeliveryStatus,
    DeliveryStatusPayload,
    MessageDeliveryStatus,
)
from shared.contracts.workflow import Step, WorkflowDefinition
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER, ref

WORKFLOW = "onboarding"
"""The workflow of ``enrollment_events.ref``, which every builder here uses."""
ENROLLMENT = uuid.UUID("6f1c2b3a-0000-4000-8000-0000000000e1")
OTHER_ENROLLMENT = uuid.UUID("6f1c2b3a-0000-4000-8000-0000000000e2")
LEASE = timedelta(seconds=120)
"""Enrollment's default lease: a grant at T0 lets messaging start the call until T0 + 120 s."""
DOMAIN = "mail.acme.test"
DEFAULT_SENDER = "outreach@acme.test"


def messaging_settings() -> MessagingSettings:
    return MessagingSettings(message_id_domain=DOMAIN, default_sender=DEFAULT_SENDER)


def workflow_applied(account: str = ACCOUNT) -> WorkflowApplied:
    """Version 1 of ``WORKFLOW``: an email with a two-line subject and no sender, then an
    SMS with its own sender."""
    definition = WorkflowDefinition(
        workflow_id=WORKFLOW,
        name="Welcome",
        record_type=RecordType.CONTACT,
        steps=(
            Step(step_id="intro", subject="Hello\nthere", body="Hi!"),
            Step(step_id="nudge", channel=Channel.SMS, body="Ping", sender="+15550100"),
        ),
    )
    return WorkflowApplied.create(
        account_id=account,
        payload=WorkflowAppliedPayload(version=1, definition=definition, actor=USER),
    )


def enrollment_enrolled(
    enrollment_id: uuid.UUID,
    *,
    email: str | None = "Ada@Example.com",
    phone: str | None = None,
    account: str = ACCOUNT,
) -> EnrollmentEnrolled:
    """``enrollment_id`` enrolled in ``WORKFLOW``; the contract lower-cases the address and
    normalises the phone number to E.164."""
    return EnrollmentEnrolled.create(
        account_id=account,
        payload=EnrolledPayload(
            **ref(enrollment_id), contact=ContactDetails(email=email, phone=phone), actor=USER
        ),
    )


def resumed(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentResumed:
    payload = ResumedPayload(**ref(enrollment_id), actor=USER)
    return EnrollmentResumed.create(account_id=account, payload=payload)


def dispatch_of(enrollment_id: uuid.UUID, step_index: int = 0, n: int = 1) -> uuid.UUID:
    """The ``n``-th dispatch id a test grants for one step of one enrollment."""
    return derived_message_id("test-dispatch", enrollment_id, step_index, n)


def granted(
    enrollment_id: uuid.UUID,
    *,
    step_index: int = 0,
    step_id: str = "intro",
    channel: Channel = Channel.EMAIL,
    account: str = ACCOUNT,
    lease_until: datetime = T0 + LEASE,
    dispatch_id: uuid.UUID | None = None,
    renewal: bool = False,
) -> EnrollmentStepGranted:
    """Enrollment grants messaging the dispatch of one step, until ``lease_until``."""
    return EnrollmentStepGranted.create(
        account_id=account,
        payload=StepGrantedPayload(
            **ref(enrollment_id),
            step_index=step_index,
            step_id=step_id,
            channel=channel,
            due_at=T0,
            dispatch_id=dispatch_id or dispatch_of(enrollment_id, step_index),
            lease_until=lease_until,
            renewal=renewal,
        ),
    )


def renewed(
    enrollment_id: uuid.UUID, *, lease_until: datetime, step_index: int = 0
) -> EnrollmentStepGranted:
    """The same grant with a later lease (enrollment's answer to ``message.deferred``)."""
    return granted(enrollment_id, step_index=step_index, lease_until=lease_until, renewal=True)


def revoked(
    enrollment_id: uuid.UUID,
    *,
    step_index: int = 0,
    step_id: str = "intro",
    account: str = ACCOUNT,
    dispatch_id: uuid.UUID | None = None,
) -> EnrollmentDispatchRevoked:
    """Enrollment decided an exit while the step was granted: no call may start for it."""
    return EnrollmentDispatchRevoked.create(
        account_id=account,
        payload=DispatchRevokedPayload(
            **ref(enrollment_id),
            dispatch_id=dispatch_id or dispatch_of(enrollment_id, step_index),
            step_index=step_index,
            step_id=step_id,
            reason=ExitReason.REPLIED,
        ),
    )


def delivery_status(
    provider_message_id: str,
    status: DeliveryStatus,
    *,
    at: datetime = T0,
    error_code: str | None = None,
    account: str = ACCOUNT,
) -> MessageDeliveryStatus:
    """A provider's delivery-status callback about the message Offramp sent as
    ``provider_message_id``, reported at ``at``."""
    return MessageDeliveryStatus.create(
        account_id=account,
        occurred_at=at,
        payload=DeliveryStatusPayload(
            channel=Channel.SMS,
            provider_message_id=provider_message_id,
            provider_reference="SM0001",
            status=status,
            error_code=error_code,
            error_message="Unknown destination handset" if error_code else None,
        ),
    )
