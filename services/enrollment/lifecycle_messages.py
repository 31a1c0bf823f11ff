"""The lifecycle decisions as outgoing messages (``messages.of`` hands them here): answers,
workflow status, progress, activity and order, restores. Ids derive from the cause."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from services.enrollment import answers, domain, lifecycle, owners, restore
from shared.contracts import Contract, Message
from shared.contracts.events import (
    EnrolledPayload,
    EnrollmentEnrolled,
)
from shared.contracts.lifecycle_events import (
    AccountOwnerRemovalSet,
    ActivityChangedPayload,
    CommandRefused,
    EnrollmentRestored,
    ExitsProgressPayload,
    OwnerRemovalSetPayload,
    OwnerRemovedPayload,
    RefusedPayload,
    ReorderedPayload,
    RestoredPayload,
    WorkflowActivityChanged,
    WorkflowExitsProgress,
    WorkflowOwnerRemoved,
    WorkflowsReordered,
    WorkflowStatusChanged,
    WorkflowStatusChangedPayload,
)

M = TypeVar("M", bound=Message)

LifecycleDecision = (
    answers.Answer | lifecycle.StatusChanged | lifecycle.Reordered | owners.OwnerRemovalSet
)


def _id(kind: str, cause: Message, subject: uuid.UUID | str) -> uuid.UUID:
    return domain.event_id(kind, cause.account_id, cause.message_id, subject)


def _caused(
    model: type[M], kind: str, cause: Message, subject: uuid.UUID | str, payload: Contract
) -> M:
    return model.create(
        message_id=_id(kind, cause, subject),
        account_id=cause.account_id,
        caused_by=cause,
        payload=payload,
    )


def refused(answer: answers.Answer, cause: Message) -> CommandRefused:
    payload = RefusedPayload(
        command_type=answer.command_type,
        code=answer.code,
        detail=answer.detail[:2000],
        workflow_id=answer.workflow_id,
        record=answer.record,
        enrollment_id=answer.enrollment_id,
    )
    return _caused(CommandRefused, "refused", cause, answer.subject, payload)


def status_changed(decision: lifecycle.StatusChanged, cause: Message) -> WorkflowStatusChanged:
    state = decision.state
    payload = WorkflowStatusChangedPayload(
        workflow_id=state.workflow_id,
        status=state.status,
        actor=decision.actor,
        live_enrollments=state.live if decision.sweep else 0,
    )
    return _caused(WorkflowStatusChanged, "workflow_status", cause, state.workflow_id, payload)


def exits_progress(sweep: lifecycle.Sweep, cause: Message) -> WorkflowExitsProgress:
    payload = ExitsProgressPayload(
        workflow_id=sweep.workflow_id,
        reason=sweep.reason,
        exited=sweep.exited,
        waiting=sweep.waiting,
        done=sweep.done,
    )
    subject = f"{sweep.sweep_id}:{sweep.chunks}"
    return _caused(WorkflowExitsProgress, "exits_progress", cause, subject, payload)


def activity_changed(change: lifecycle.ActivityChanged) -> WorkflowActivityChanged:
    """The ``seq``-th change of a workflow's activity: the same id however often a failed
    round publishes it again."""
    payload = ActivityChangedPayload(workflow_id=change.workflow_id, active=change.active)
    return WorkflowActivityChanged.create(
        message_id=domain.event_id(
            "activity", change.account_id, _NO_CAUSE, f"{change.workflow_id}:{change.seq}"
        ),
        account_id=change.account_id,
        payload=payload,
    )


_NO_CAUSE = uuid.UUID(int=0)


def reordered(decision: lifecycle.Reordered, cause: Message) -> WorkflowsReordered:
    payload = ReorderedPayload(workflow_ids=decision.workflow_ids, actor=decision.actor)
    return _caused(WorkflowsReordered, "reordered", cause, decision.account_id, payload)


def restored(decision: restore.Restored, cause: Message) -> list[Message]:
    """The restore, then the new enrollment as any enrollment is announced (so that every
    service follows it as it follows an enrollment); ``messages`` adds its next step."""
    new = decision.enrollment
    ref: dict[str, Any] = {
        "enrollment_id": new.enrollment_id,
        "workflow_id": new.workflow_id,
        "workflow_version": new.workflow_version,
        "record": new.record,
    }
    back = RestoredPayload(
        **ref,
        restored_from=decision.restored_from.enrollment_id,
        step_index=decision.scheduled.index,
        actor=decision.actor,
    )
    enrolled = EnrolledPayload(**ref, contact=decision.contact, actor=decision.actor)
    return [
        _caused(EnrollmentRestored, "restored", cause, new.enrollment_id, back),
        _caused(EnrollmentEnrolled, "enrolled", cause, new.enrollment_id, enrolled),
    ]


def owner_removed(decision: owners.OwnerRemoved, cause: Message) -> WorkflowOwnerRemoved:
    state, setting = decision.state, decision.setting
    payload = OwnerRemovedPayload(
        workflow_id=state.workflow_id,
        user_id=decision.user_id,
        policy=setting.policy,
        reassigned_to_user_id=setting.reassign_to_user_id if decision.reassigned else None,
        live_enrollments=state.live if decision.sweep else 0,
    )
    return _caused(WorkflowOwnerRemoved, "owner_removed", cause, state.workflow_id, payload)


def owner_removal_set(decision: owners.OwnerRemovalSet, cause: Message) -> AccountOwnerRemovalSet:
    payload = OwnerRemovalSetPayload(
        policy=decision.setting.policy,
        reassign_to_user_id=decision.setting.reassign_to_user_id,
        actor=decision.actor,
    )
    return _caused(AccountOwnerRemovalSet, "owner_removal_set", cause, decision.account_id, payload)


def of(decision: LifecycleDecision, cause: Message) -> list[Message]:
    match decision:
        case answers.Answer():
            return [refused(decision, cause)]
        case lifecycle.StatusChanged():
            return [status_changed(decision, cause)]
        case lifecycle.Reordered():
            return [reordered(decision, cause)]
        case owners.OwnerRemovalSet():
            return [owner_removal_set(decision, cause)]
