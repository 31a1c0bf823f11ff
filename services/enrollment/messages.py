"""Enrollment's decisions as outgoing messages.

Every id is derived from the message that caused the decision (``domain.event_id``): a
replayed command publishes the same ids again, and consumers drop the repeat.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from services.enrollment import (
    answers,
    caps,
    decisions,
    dispatch,
    domain,
    exclusivity,
    exits,
    lifecycle,
    lifecycle_messages,
    owners,
    pauses,
    restore,
    rules_messages,
    steps,
)
from shared.contracts import Contract, Message
from shared.contracts.events import (
    CompletedPayload,
    DispatchRevokedPayload,
    EnrolledPayload,
    EnrollmentCompleted,
    EnrollmentDispatchRevoked,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentRejected,
    EnrollmentResumed,
    EnrollmentStepCompleted,
    EnrollmentStepGranted,
    EnrollmentStepScheduled,
    ExitedPayload,
    PausedPayload,
    RejectedPayload,
    ResumedPayload,
    StepCompletedPayload,
    StepGrantedPayload,
    StepScheduledPayload,
    UnsentStep,
    WorkflowApplied,
    WorkflowAppliedPayload,
)

E = TypeVar("E", bound=Message)


def _caused(
    model: type[E], kind: str, cause: Message, subject: uuid.UUID | str, payload: Contract
) -> E:
    """A ``model`` event ``cause`` led to about ``subject``: its id is derived from both."""
    return model.create(
        message_id=domain.event_id(kind, cause.account_id, cause.message_id, subject),
        account_id=cause.account_id,
        caused_by=cause,
        payload=payload,
    )


def _ref(enrollment: domain.Enrollment) -> dict[str, Any]:
    """The ``EnrollmentRef`` fields every enrollment event starts with."""
    return {
        "enrollment_id": enrollment.enrollment_id,
        "workflow_id": enrollment.workflow_id,
        "workflow_version": enrollment.workflow_version,
        "record": enrollment.record,
    }


def workflow_applied(applied: domain.VersionApplied, cause: Message) -> WorkflowApplied:
    payload = WorkflowAppliedPayload(
        version=applied.version, definition=applied.definition, actor=applied.actor
    )
    return _caused(
        WorkflowApplied, "workflow_applied", cause, applied.definition.workflow_id, payload
    )


def step_scheduled(
    enrollment: domain.Enrollment, scheduled: domain.ScheduledStep, cause: Message
) -> EnrollmentStepScheduled:
    payload = StepScheduledPayload(
        **_ref(enrollment),
        step_index=scheduled.index,
        step_id=scheduled.step.step_id,
        channel=scheduled.step.channel,
        due_at=scheduled.due_at,
        unplanned_at=scheduled.unplanned_at or scheduled.due_at,
    )
    return _caused(
        EnrollmentStepScheduled, "step_scheduled", cause, enrollment.enrollment_id, payload
    )


def enrolled(admitted: domain.Admitted, cause: Message) -> list[Message]:
    enrollment = admitted.enrollment
    payload = EnrolledPayload(**_ref(enrollment), contact=admitted.contact, actor=admitted.actor)
    return [
        _caused(EnrollmentEnrolled, "enrolled", cause, enrollment.enrollment_id, payload),
        step_scheduled(enrollment, admitted.scheduled, cause),
    ]


def rejected(refused: domain.Refused, cause: Message) -> EnrollmentRejected:
    payload = RejectedPayload(
        workflow_id=refused.workflow_id,
        record=refused.record,
        actor=refused.actor,
        rejections=refused.rejections,
    )
    return _caused(EnrollmentRejected, "rejected", cause, refused.workflow_id, payload)


def exited(decision: exits.Exited, cause: Message) -> list[Message]:
    """The exit; first the step that went out while it waited, if one did."""
    out: list[Message] = []
    if decision.sent is not None:
        out.append(_step_completed(decision.enrollment, decision.sent, cause))
    out.append(_exited(decision, cause))
    return out


def _exited(decision: exits.Exited, cause: Message) -> EnrollmentExited:
    enrollment = decision.enrollment
    payload = ExitedPayload(
        **_ref(enrollment),
        reason=decision.reason,
        source=decision.source,
        actor=decision.actor,
        triggering_event=decision.triggering_event,
        steps_completed=decision.steps_completed,
        unsent_step=_unsent(decision.unsent),
        exclusion=decision.exclusion,
    )
    return _caused(EnrollmentExited, "exited", cause, enrollment.enrollment_id, payload)


def _unsent(unsent: exits.UnsentStep | None) -> UnsentStep | None:
    if unsent is None:
        return None
    return UnsentStep(
        step_index=unsent.index,
        step_id=unsent.step_id,
        kind=unsent.kind.value,
        reason=unsent.reason[:2000],
    )


def dispatch_revoked(decision: exits.ExitPending, cause: Message) -> EnrollmentDispatchRevoked:
    enrollment, granted = decision.enrollment, decision.dispatch
    payload = DispatchRevokedPayload(
        **_ref(enrollment),
        dispatch_id=granted.dispatch_id,
        step_index=granted.step_index,
        step_id=decision.step_id,
        reason=decision.pending.reason,
    )
    return _caused(
        EnrollmentDispatchRevoked, "dispatch_revoked", cause, enrollment.enrollment_id, payload
    )


def step_granted(decision: dispatch.Granted, cause: Message) -> EnrollmentStepGranted:
    enrollment, step, granted = decision.enrollment, decision.step, decision.dispatch
    payload = StepGrantedPayload(
        **_ref(enrollment),
        step_index=step.index,
        step_id=step.step_id,
        channel=step.channel,
        due_at=step.due_at,
        dispatch_id=granted.dispatch_id,
        lease_until=granted.lease_until,
        renewal=decision.renewal,
    )
    kind = "grant_renewed" if decision.renewal else "step_granted"
    return _caused(EnrollmentStepGranted, kind, cause, enrollment.enrollment_id, payload)


def paused(decision: pauses.Paused, cause: Message) -> EnrollmentPaused:
    enrollment = decision.enrollment
    payload = PausedPayload(
        **_ref(enrollment), until=decision.until, reason=decision.reason, actor=decision.actor
    )
    # Its id is the pause's id (``domain.pause_id_for``): what a timed resume names.
    return EnrollmentPaused.create(
        message_id=decision.pause_id,
        account_id=cause.account_id,
        caused_by=cause,
        payload=payload,
    )


def resumed(decision: pauses.Resumed, cause: Message) -> list[Message]:
    enrollment = decision.enrollment
    payload = ResumedPayload(**_ref(enrollment), actor=decision.actor)
    return [
        _caused(EnrollmentResumed, "resumed", cause, enrollment.enrollment_id, payload),
        step_scheduled(enrollment, decision.scheduled, cause),
    ]


def progressed(progress: steps.ScheduleNext | steps.Complete, cause: Message) -> list[Message]:
    """The sent step is completed; then the next is scheduled, or the enrollment completed.

    A paused enrollment records the sent step; resuming schedules the next one.
    """
    enrollment = progress.enrollment
    out: list[Message] = [_step_completed(enrollment, progress.sent, cause)]
    if isinstance(progress, steps.ScheduleNext):
        if enrollment.status is domain.Status.ACTIVE:
            out.append(step_scheduled(enrollment, progress.scheduled, cause))
        return out
    done = CompletedPayload(**_ref(enrollment), steps_completed=enrollment.steps_completed)
    out.append(_caused(EnrollmentCompleted, "completed", cause, enrollment.enrollment_id, done))
    return out


def _step_completed(
    enrollment: domain.Enrollment, sent: exits.SentStep, cause: Message
) -> EnrollmentStepCompleted:
    step = StepCompletedPayload(
        **_ref(enrollment),
        step_index=sent.index,
        step_id=sent.step_id,
        provider_message_id=sent.provider_message_id,
    )
    return _caused(EnrollmentStepCompleted, "step_completed", cause, enrollment.enrollment_id, step)


AnyDecision = decisions.Decision | dispatch.Granted | dispatch.Rescheduled
"""Every decision with outputs: the domain's, and the dispatch grants of ``dispatch``."""


def of(decision: AnyDecision, cause: Message) -> list[Message]:  # noqa: PLR0911, PLR0912 - a case a kind
    """Everything ``decision`` publishes, in order; ``cause`` is the message that led to it."""
    match decision:
        case dispatch.Granted():
            return [step_granted(decision, cause)]
        case dispatch.Rescheduled():
            return [step_scheduled(decision.enrollment, decision.scheduled, cause)]
        case exits.ExitPending():
            return [dispatch_revoked(decision, cause)]
        case steps.Settled():
            return []
        case domain.VersionApplied():
            return [workflow_applied(decision, cause)]
        case domain.Admitted():
            return enrolled(decision, cause)
        case domain.Refused():
            return [rejected(decision, cause)]
        case exits.Exited():
            return exited(decision, cause)
        case pauses.Paused():
            return [paused(decision, cause)]
        case pauses.Resumed():
            return resumed(decision, cause)
        case steps.ScheduleNext() | steps.Complete():
            return progressed(decision, cause)
        case owners.OwnerRemoved():
            reassigned = decision.reassigned
            applied = [] if reassigned is None else [workflow_applied(reassigned, cause)]
            return [*applied, lifecycle_messages.owner_removed(decision, cause)]
        case caps.Deferred():
            return [rules_messages.deferred_by_cap(decision, cause)]
        case exclusivity.ExclusivitySet():
            return [rules_messages.exclusivity_set(decision, cause)]
        case restore.Restored():
            restored = lifecycle_messages.restored(decision, cause)
            return [*restored, step_scheduled(decision.enrollment, decision.scheduled, cause)]
        case (
            answers.Answer()
            | lifecycle.StatusChanged()
            | lifecycle.Reordered()
            | owners.OwnerRemovalSet()
        ):
            return lifecycle_messages.of(decision, cause)
