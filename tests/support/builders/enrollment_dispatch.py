"""Builders of step dispatch, as enrollment sees it: the scheduler's ``step.due``,
messaging's answers to a grant (sent, failed, cancelled, deferred), and the grant and
pending exit an enrollment holds."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from services.enrollment.domain import Dispatch, Enrollment, PendingExit
from shared.contracts import SYSTEM_ACTOR, Actor, topics
from shared.contracts.commands import ExitReason, ExitSource, TriggeringEvent
from shared.contracts.events import (
    CancelReason,
    EnrollmentEnrolled,
    EnrollmentStepGranted,
    FailureKind,
    MessageCancelled,
    MessageCancelledPayload,
    MessageDeferred,
    MessageDeferredPayload,
    MessageFailed,
    MessageFailedPayload,
    MessageSent,
    MessageSentPayload,
    StepDue,
    StepDuePayload,
)
from shared.contracts.inbound import Channel
from tests.support.builders.enrollment_domain import NOW
from tests.support.builders.enrollment_events import ACCOUNT, T0

LEASE = timedelta(minutes=2)
"""The lease the domain tests grant with."""
SKEW = timedelta(seconds=5)
"""The clock skew the domain tests allow."""

REPLY = TriggeringEvent(
    message_id=uuid.UUID("0b7e5a1c-0000-4000-8000-0000000000e2"),
    type="email.replied",
    topic=topics.INBOUND_EMAIL,
    occurred_at=NOW,
)


# --- domain values ---------------------------------------------------------------------


def dispatch(
    step_index: int = 0,
    *,
    lease_until: datetime = NOW + LEASE,
    dispatch_id: uuid.UUID | None = None,
) -> Dispatch:
    return Dispatch(dispatch_id or uuid.uuid4(), step_index, f"s{step_index}", lease_until)


def pending_exit(
    reason: ExitReason = ExitReason.REPLIED,
    *,
    source: ExitSource = ExitSource.TRIGGER,
    actor: Actor = SYSTEM_ACTOR,
    decided_at: datetime = NOW,
    triggering_event: TriggeringEvent | None = REPLY,
) -> PendingExit:
    return PendingExit(reason, source, actor, triggering_event, decided_at)


def granted(
    current: Enrollment,
    *,
    lease_until: datetime = NOW + LEASE,
    dispatch_id: uuid.UUID | None = None,
) -> Enrollment:
    """``current`` holding the grant of its current step."""
    step = dispatch(current.current_step, lease_until=lease_until, dispatch_id=dispatch_id)
    return replace(current, dispatch=step)


def exiting(current: Enrollment, reason: ExitReason = ExitReason.REPLIED) -> Enrollment:
    """``current`` (which holds a grant) waiting for that send's outcome to exit."""
    assert current.dispatch is not None
    return replace(current, pending_exit=pending_exit(reason))


# --- messages --------------------------------------------------------------------------


def due_evt(
    enrolled: EnrollmentEnrolled,
    step_index: int = 0,
    *,
    due_at: datetime = T0,
    account_id: str = ACCOUNT,
    message_id: uuid.UUID | None = None,
) -> StepDue:
    """The scheduler says step ``step_index`` of ``enrolled`` is due."""
    p = enrolled.payload
    payload = StepDuePayload(
        enrollment_id=p.enrollment_id,
        workflow_id=p.workflow_id,
        workflow_version=p.workflow_version,
        record=p.record,
        step_index=step_index,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        due_at=due_at,
    )
    return StepDue.create(account_id=account_id, payload=payload, message_id=message_id)


def _ref(grant: EnrollmentStepGranted) -> dict[str, object]:
    p = grant.payload
    return {
        "enrollment_id": p.enrollment_id,
        "workflow_id": p.workflow_id,
        "workflow_version": p.workflow_version,
        "record": p.record,
        "step_index": p.step_index,
        "step_id": p.step_id,
        "dispatch_id": p.dispatch_id,
    }


def sent_for(grant: EnrollmentStepGranted, sent_at: datetime = T0) -> MessageSent:
    """Messaging sent the step ``grant`` let it send."""
    payload = MessageSentPayload.model_validate(
        {
            **_ref(grant),
            "channel": Channel.EMAIL,
            "provider_message_id": f"<m-{grant.payload.step_index}@offramp.test>",
            "recipient": "c-1@acme.com",
            "sent_at": sent_at,
        }
    )
    return MessageSent.create(account_id=grant.account_id, payload=payload)


def failed_for(
    grant: EnrollmentStepGranted, kind: FailureKind = FailureKind.HARD_BOUNCE
) -> MessageFailed:
    """Messaging gave up for good on the step ``grant`` let it send."""
    payload = MessageFailedPayload.model_validate(
        {
            **_ref(grant),
            "channel": Channel.EMAIL,
            "recipient": "c-1@acme.com",
            "kind": kind,
            "reason": "550 5.1.1 <c-1@acme.com>: Recipient address rejected",
            "attempts": 1,
            "failed_at": T0,
        }
    )
    return MessageFailed.create(account_id=grant.account_id, payload=payload)


def cancelled_for(
    grant: EnrollmentStepGranted, reason: CancelReason = CancelReason.DISPATCH_REVOKED
) -> MessageCancelled:
    """Messaging did not send the step ``grant`` let it send, for ``reason``."""
    payload = MessageCancelledPayload.model_validate({**_ref(grant), "reason": reason})
    return MessageCancelled.create(account_id=grant.account_id, payload=payload)


def deferred_for(
    grant: EnrollmentStepGranted, *, next_attempt_at: datetime, attempts: int = 1
) -> MessageDeferred:
    """Messaging could not start the send before ``grant``'s lease lapsed."""
    payload = MessageDeferredPayload.model_validate(
        {
            **_ref(grant),
            "channel": Channel.EMAIL,
            "lease_until": grant.payload.lease_until,
            "next_attempt_at": next_attempt_at,
            "attempts": attempts,
            "reason": "the grant's lease lapsed before the send could start",
        }
    )
    return MessageDeferred.create(account_id=grant.account_id, payload=payload)
