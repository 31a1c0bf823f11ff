"""The enrollment events messaging follows besides grants: the projection the sender
re-checks at claim time, revoked grants, and ended enrollments.

``enrollment.dispatch_revoked`` projects the enrollment as exited (it is exiting: a send
of it that comes back to the queue, e.g. after a transient failure, is cancelled, never
sent), cancels that step's send if no call was handed to a provider, and answers the
revoke (``stopping``). ``enrollment.exited`` and ``enrollment.completed`` cancel the
enrollment's unsent steps at once; they and ``enrollment.paused`` refund its unsent
reserved SMS segments (``balance``; a resume re-schedules, and so reserves, the step).
``enrollment.resumed`` only makes the projection active again: a step cancelled for the
pause is queued again by its new grant, never without one.
"""

from __future__ import annotations

from datetime import datetime

from services.messaging import balance, messages, projection, stopping
from services.messaging.ports import MessagingStore
from shared.contracts import Message
from shared.contracts.events import (
    CancelReason,
    EnrollmentCompleted,
    EnrollmentDispatchRevoked,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
)
from shared.contracts.sms_balance import RefundReason
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

EnrollmentEvent = (
    EnrollmentEnrolled
    | EnrollmentPaused
    | EnrollmentResumed
    | EnrollmentCompleted
    | EnrollmentExited
    | EnrollmentDispatchRevoked
)
ENROLLMENT_CHANGES: tuple[type[Message], ...] = (
    EnrollmentEnrolled,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentDispatchRevoked,
)
"""The events ``enrollments_changed`` takes (all of them one handler: one run)."""

_REFUNDED_BECAUSE = {
    EnrollmentExited: RefundReason.ENROLLMENT_EXITED,
    EnrollmentCompleted: RefundReason.ENROLLMENT_COMPLETED,
    EnrollmentPaused: RefundReason.ENROLLMENT_PAUSED,
}
"""The events that refund the enrollment's unsent reserved SMS segments (``balance``)."""

_ENDED_BECAUSE = {
    projection.EnrollmentStatus.EXITED: CancelReason.ENROLLMENT_EXITED,
    projection.EnrollmentStatus.COMPLETED: CancelReason.ENROLLMENT_COMPLETED,
}


async def enrollments_changed(
    uow: UnitOfWork[MessagingStore], events: list[EnrollmentEvent], now: datetime
) -> None:
    """Project the enrollments' status, and stop what revokes and ends stop.

    Locking the projection rows waits for a sender claiming one of these enrollments' sends
    (a short transaction: no provider call runs inside it), and keeps any claim off them
    until this commits: a send is either claimed before (``sending``: its outcome answers)
    or sees the change. The run is folded in order in memory, then saved at once: one lock
    and one upsert per run; one read and one update of the sends only when the run holds
    a revoke or an end.
    """
    seen = [_seen(event) for event in events]
    # Keyed by account as well: another account's enrollment with the same id is another
    # row, never this one.
    views = await uow.store.enrollments_for_update({s.key for s in seen})
    changed: dict[projection.EnrollmentKey, projection.EnrollmentView] = {}
    stops: list[stopping.Revoke | stopping.EnrollmentEnded] = []
    for event, change in zip(events, seen, strict=True):
        view = projection.project(views.get(change.key), change)
        views[change.key] = changed[change.key] = view
        if isinstance(event, EnrollmentDispatchRevoked):
            stops.append(_revoke(event))
        elif isinstance(event, EnrollmentExited | EnrollmentCompleted):
            stops.append(stopping.EnrollmentEnded(change.key, _ENDED_BECAUSE[view.status]))
        log.info(
            "enrollment_projected",
            enrollment_id=str(change.enrollment_id),
            change=change.change.value,
            status=view.status.value,
        )
    await uow.store.save_enrollments(list(changed.values()))
    if stops:
        await _stop(uow, stops)
    refunds = {
        seen_.key: _REFUNDED_BECAUSE[type(event)]
        for event, seen_ in zip(events, seen, strict=True)
        if type(event) in _REFUNDED_BECAUSE
    }
    if refunds:
        await balance.settle(uow, now=now, enrollments=refunds)


async def _stop(
    uow: UnitOfWork[MessagingStore], stops: list[stopping.Revoke | stopping.EnrollmentEnded]
) -> None:
    enrollments = {s.key[:2] if isinstance(s, stopping.Revoke) else s.key for s in stops}
    queued = await uow.store.queued_of(enrollments)
    decisions = stopping.stop_unsent(stops, queued)
    stopped = [d for d in decisions if isinstance(d, stopping.Stopped)]
    cancelled = await uow.store.stop_unsent(stopped) if stopped else set()
    for decision in decisions:
        if isinstance(decision, stopping.Stopped):
            step = decision.step
            if step.key not in cancelled:
                # A claim took it meanwhile: the call's outcome answers.
                log.info("send_in_flight_not_stopped", **_fields(step))
                continue
            log.info("send_stopped", reason=decision.reason.value, **_fields(step))
        else:
            log.info("revoked_step_never_queued", **_fields(decision.revoke))
        uow.publish(messages.message_cancelled(decision))
    for revoke in (s for s in stops if isinstance(s, stopping.Revoke)):
        row = queued.get(revoke.key)
        if row is not None and row.status not in stopping.UNSTARTED:
            # Under way (its outcome answers) or finished (its outcome was published).
            log.info("revoke_answered_by_outcome", status=row.status, **_fields(revoke))


def _fields(step: stopping.QueuedStep | stopping.Revoke) -> dict[str, object]:
    return {
        "enrollment_id": str(step.enrollment_id),
        "step_index": step.step_index,
        "account_id": step.account_id,
        "dispatch_id": str(step.dispatch_id),
    }


def _revoke(event: EnrollmentDispatchRevoked) -> stopping.Revoke:
    payload = event.payload
    return stopping.Revoke(
        account_id=event.account_id,
        enrollment_id=payload.enrollment_id,
        workflow_id=payload.workflow_id,
        workflow_version=payload.workflow_version,
        record=payload.record,
        step_index=payload.step_index,
        step_id=payload.step_id,
        dispatch_id=payload.dispatch_id,
        cause_message_id=event.message_id,
        correlation_id=event.correlation_id or event.message_id,
    )


def _seen(event: EnrollmentEvent) -> projection.EnrollmentSeen:
    payload = event.payload
    email = phone = None
    if isinstance(event, EnrollmentEnrolled) and event.payload.contact is not None:
        email, phone = event.payload.contact.email, event.payload.contact.phone
    return projection.EnrollmentSeen(
        change=projection.EnrollmentChange(event.type),
        enrollment_id=payload.enrollment_id,
        account_id=event.account_id,
        workflow_id=payload.workflow_id,
        workflow_version=payload.workflow_version,
        record=payload.record,
        email=email,
        phone=phone,
    )
