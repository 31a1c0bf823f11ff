"""Enrollment's decisions as history entries: every transition, and every rejection.

History is what an operator reads to learn why a record is (no longer) in a workflow, so
each entry keeps the facts of its decision and the id of the message that caused it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.enrollment import (
    answers,
    caps,
    decisions,
    dispatch,
    domain,
    exclusivity,
    exits,
    lifecycle,
    owners,
    pauses,
    restore,
    steps,
)
from services.enrollment.ports import HistoryEntry
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentRejected,
    EnrollmentResumed,
    EnrollmentStepCompleted,
    ExclusionHit,
)
from shared.contracts.lifecycle_events import (
    EnrollmentRestored,
)


def _transition(
    enrollment: domain.Enrollment,
    event_type: str,
    caused_by: uuid.UUID,
    at: datetime,
    **detail: Any,
) -> HistoryEntry:
    return HistoryEntry(
        account_id=enrollment.account_id,
        workflow_id=enrollment.workflow_id,
        record=enrollment.record,
        event_type=event_type,
        detail={"step": enrollment.current_step, "status": enrollment.status.value, **detail},
        enrollment_id=enrollment.enrollment_id,
        caused_by=caused_by,
        at=at,
    )


def _unsent_detail(unsent: exits.UnsentStep | None) -> dict[str, Any]:
    """An exit caused by a send that will never happen says which step, and why."""
    if unsent is None:
        return {}
    return {
        "unsent_step": {
            "step_index": unsent.index,
            "step_id": unsent.step_id,
            "kind": unsent.kind.value,
            "reason": unsent.reason,
        }
    }


EXIT_PENDING = "enrollment.exit_pending"
"""The history entry of an exit waiting for the outcome of a granted send."""


def _step_completed(
    enrollment: domain.Enrollment, sent: exits.SentStep, caused_by: uuid.UUID, at: datetime
) -> HistoryEntry:
    return _transition(
        enrollment,
        EnrollmentStepCompleted.TYPE,
        caused_by,
        at,
        step_index=sent.index,
        provider_message_id=sent.provider_message_id,
    )


def _exclusion_detail(hit: ExclusionHit | None) -> dict[str, Any]:
    """An exit by an exclusion rule names the rule, its version and what matched."""
    return {} if hit is None else {"exclusion": hit.model_dump(mode="json")}


def entries(  # noqa: PLR0911 - one case per kind of decision
    decision: decisions.Decision | dispatch.Granted | dispatch.Rescheduled,
    *,
    caused_by: uuid.UUID,
    at: datetime,
) -> list[HistoryEntry]:
    """The history ``decision`` writes, in order (a new workflow version, a grant and its
    settlement write none: they are steps' plumbing, not the enrollment's story)."""
    match decision:
        case (
            domain.VersionApplied() | dispatch.Granted() | dispatch.Rescheduled() | steps.Settled()
        ):
            return []
        case (
            answers.Answer()
            | lifecycle.StatusChanged()
            | lifecycle.Reordered()
            | owners.OwnerRemoved()
            | owners.OwnerRemovalSet()
            | exclusivity.ExclusivitySet()
            | caps.Deferred()
        ):
            return []  # about commands and workflows, not one enrollment's story
        case restore.Restored():
            old = decision.restored_from.enrollment_id
            return [
                _transition(
                    decision.enrollment,
                    EnrollmentRestored.TYPE,
                    caused_by,
                    at,
                    restored_from=str(old),
                    actor=decision.actor.model_dump(),
                )
            ]
        case exits.ExitPending():
            pending = decision.pending
            return [
                _transition(
                    decision.enrollment,
                    EXIT_PENDING,
                    caused_by,
                    at,
                    reason=pending.reason.value,
                    source=pending.source.value,
                    waiting_for_step=decision.dispatch.step_index,
                    dispatch_id=str(decision.dispatch.dispatch_id),
                )
            ]
        case domain.Admitted():
            return [_transition(decision.enrollment, EnrollmentEnrolled.TYPE, caused_by, at)]
        case domain.Refused():
            rejections = [r.model_dump() for r in decision.rejections]
            return [
                HistoryEntry(
                    account_id=decision.account_id,
                    workflow_id=decision.workflow_id,
                    record=decision.record,
                    event_type=EnrollmentRejected.TYPE,
                    detail={"rejections": rejections},
                    enrollment_id=None,
                    caused_by=caused_by,
                    at=at,
                )
            ]
        case exits.Exited():
            trigger = decision.triggering_event
            sent = decision.sent
            before = (
                [] if sent is None else [_step_completed(decision.enrollment, sent, caused_by, at)]
            )
            return [
                *before,
                _transition(
                    decision.enrollment,
                    EnrollmentExited.TYPE,
                    caused_by,
                    at,
                    reason=decision.reason.value,
                    source=decision.source.value,
                    actor=decision.actor.model_dump(),
                    triggering_event=trigger.model_dump(mode="json") if trigger else None,
                    **_unsent_detail(decision.unsent),
                    **_exclusion_detail(decision.exclusion),
                ),
            ]
        case pauses.Paused():
            enrollment = decision.enrollment
            return [
                _transition(
                    enrollment, EnrollmentPaused.TYPE, caused_by, at, reason=decision.reason
                )
            ]
        case pauses.Resumed():
            return [_transition(decision.enrollment, EnrollmentResumed.TYPE, caused_by, at)]
        case steps.ScheduleNext() | steps.Complete():
            enrollment = decision.enrollment
            step_completed = _step_completed(enrollment, decision.sent, caused_by, at)
            if isinstance(decision, steps.ScheduleNext):
                return [step_completed]
            return [
                step_completed,
                _transition(enrollment, EnrollmentCompleted.TYPE, caused_by, at),
            ]
