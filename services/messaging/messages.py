"""Messaging's decisions as outgoing messages: the events a send's outcome publishes, and
the email a provider is handed."""

from __future__ import annotations

from typing import Any, TypeVar

from services.messaging import delivery, domain, segments
from services.messaging.parking import ParkedFailed, ParkedStep
from services.messaging.providers import OutboundEmail
from services.messaging.stopping import NeverQueued, QueuedStep, Revoke, Stopped
from shared.contracts import derived_message_id
from shared.contracts.events import (
    CancelReason,
    FailureKind,
    MessageCancelled,
    MessageCancelledPayload,
    MessageDeferred,
    MessageDeferredPayload,
    MessageFailed,
    MessageFailedPayload,
    MessageSent,
    MessageSentPayload,
    MessageUndelivered,
    MessageUndeliveredPayload,
)
from shared.contracts.inbound import Channel

M = TypeVar("M", MessageSent, MessageCancelled, MessageFailed, MessageDeferred)

StepRef = domain.Send | ParkedStep | QueuedStep | Revoke
"""Anything that names one step of one enrollment, with the flow ids it came with."""


def _step_ref(send: StepRef) -> dict[str, Any]:
    """The fields every message about a send carries: enrollment and step."""
    return {
        "enrollment_id": send.enrollment_id,
        "workflow_id": send.workflow_id,
        "workflow_version": send.workflow_version,
        "record": send.record,
        "step_index": send.step_index,
        "step_id": send.step_id,
    }


def _traced(message: M, send: StepRef) -> M:
    # The send outlives the grant that queued it; carry that flow's ids forward.
    return message.model_copy(
        update={"correlation_id": send.correlation_id, "causation_id": send.cause_message_id}
    )


def message_sent(decision: domain.Sent) -> MessageSent:
    """``message.sent``; its id is derived, so a step sent twice publishes one id."""
    send = decision.send
    return _traced(
        MessageSent.create(
            message_id=domain.send_event_id(MessageSent.TYPE, send),
            account_id=send.account_id,
            occurred_at=decision.sent_at,
            payload=MessageSentPayload(
                **_step_ref(send),
                channel=send.channel,
                provider_message_id=send.provider_message_id,
                recipient=decision.recipient,
                sent_at=decision.sent_at,
                dispatch_id=send.dispatch_id,
                provider_reference=decision.provider_reference,
                segments=segments.count(send.body).segments
                if send.channel is Channel.SMS
                else None,
            ),
        ),
        send,
    )


def message_undelivered(decision: delivery.Undelivered) -> MessageUndelivered:
    """``message.undelivered``: once per send (its id is derived from the send)."""
    send, report = decision.send, decision.report
    message = MessageUndelivered.create(
        message_id=domain.send_event_id(MessageUndelivered.TYPE, send),
        account_id=send.account_id,
        occurred_at=report.reported_at,
        payload=MessageUndeliveredPayload(
            **_step_ref(send),
            channel=send.channel,
            provider_message_id=send.provider_message_id,
            provider_reference=report.provider_reference,
            kind=decision.kind,
            status=report.status,
            error_code=report.error_code,
            reason=decision.reason,
            reported_at=report.reported_at,
        ),
    )
    return message.model_copy(
        update={"correlation_id": report.correlation_id, "causation_id": report.cause_message_id}
    )


def message_cancelled(decision: domain.Cancelled | Stopped | NeverQueued) -> MessageCancelled:
    """``message.cancelled`` with the reason the send will never go out, and the grant it
    was due under (for a revoke, the revoked grant: that is what it answers)."""
    step: StepRef
    if isinstance(decision, domain.Cancelled):
        step, reason, dispatch_id = decision.send, decision.reason, decision.send.dispatch_id
    elif isinstance(decision, Stopped):
        step, reason, dispatch_id = decision.step, decision.reason, decision.dispatch_id
    else:
        step, reason = decision.revoke, CancelReason.DISPATCH_REVOKED
        dispatch_id = decision.revoke.dispatch_id
    return _traced(
        MessageCancelled.create(
            message_id=domain.cancel_event_id(
                step.account_id,
                step.enrollment_id,
                step.step_index,
                reason=reason,
                dispatch_id=dispatch_id,
            ),
            account_id=step.account_id,
            payload=MessageCancelledPayload(
                **_step_ref(step), reason=reason, dispatch_id=dispatch_id
            ),
        ),
        step,
    )


def message_deferred(decision: domain.Deferred) -> MessageDeferred:
    """``message.deferred``: the grant's lease lapsed and no call started; one per lapsed
    lease (its id is derived from the grant and that lease)."""
    send, grant = decision.send, decision.grant
    return _traced(
        MessageDeferred.create(
            message_id=derived_message_id(
                MessageDeferred.TYPE,
                send.account_id,
                send.enrollment_id,
                send.step_index,
                grant.dispatch_id,
                grant.lease_until.isoformat(),
            ),
            account_id=send.account_id,
            occurred_at=decision.deferred_at,
            payload=MessageDeferredPayload(
                **_step_ref(send),
                dispatch_id=grant.dispatch_id,
                channel=send.channel,
                lease_until=grant.lease_until,
                next_attempt_at=decision.deferred_at,
                attempts=send.attempts,
                reason=domain.DEFER_REASON,
            ),
        ),
        send,
    )


def message_failed(decision: domain.Failed | ParkedFailed) -> MessageFailed:
    """``message.failed``: the step will not be tried again, with the provider's last answer
    (or, for a step that never reached a provider, why). Its id is derived like the others.

    ``attempts`` counts provider calls; a step that never reached one counts 1 (the
    contract wants at least one), its reason says it was never sent.
    """
    if isinstance(decision, domain.Failed):
        send: domain.Send | ParkedStep = decision.send
        attempts, recipient = decision.attempts, decision.recipient
        kind = decision.kind or FailureKind.RETRIES_EXHAUSTED
        reason = decision.error
    else:
        send, attempts, recipient = decision.parked, 1, None
        kind, reason = decision.kind, decision.reason
    return _traced(
        MessageFailed.create(
            message_id=derived_message_id(
                MessageFailed.TYPE, send.account_id, send.enrollment_id, send.step_index
            ),
            account_id=send.account_id,
            occurred_at=decision.failed_at,
            payload=MessageFailedPayload(
                **_step_ref(send),
                channel=send.channel,
                provider_message_id=send.provider_message_id,
                recipient=recipient,
                kind=kind,
                reason=reason[:2000],
                attempts=attempts,
                failed_at=decision.failed_at,
                dispatch_id=send.dispatch_id,
            ),
        ),
        send,
    )


def outbound_email(send: domain.Send, recipient: str) -> OutboundEmail:
    """What the provider is handed for ``send``: the same Message-ID on every attempt."""
    return OutboundEmail(
        message_id=send.provider_message_id,
        sender=send.sender,
        recipient=recipient,
        subject=send.subject,
        body=send.body,
        channel=send.channel,
        record=f"{send.record.type.value}:{send.record.id}",
        enrollment_id=str(send.enrollment_id),
    )
