"""Enrollment's decisions as history entries: every transition, and every rejection.

History is what an operator reads to learn why a record is (no longer) in a workflow, so
each entry keeps the facts of its decision and the id of the message that caused it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.enrollment import domain
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


def _unsent_detail(unsent: domain.UnsentStep | None) -> dict[str, Any]:
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


def _exclusion_detail(hit: ExclusionHit | None) -> dict[str, Any]:
    """An exit by an exclusion rule names the rule, its version and what matched."""
    return {} if hit is None else {"exclusion": hit.model_dump(mode="json")}


def entries(  # noqa: PLR0911 - one case per kind of decision
    decision: domain.Decision, *, caused_by: uuid.UUID, at: datetime
) -> list[HistoryEntry]:
    """The history ``decision`` writes, in order (a new workflow version writes none)."""
    match decision:
        case domain.VersionApplied():
            return []
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
        case domain.Exited():
            trigger = decision.triggering_event
            return [
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
                )
            ]
        case domain.Paused():
            enrollment = decision.enrollment
            return [
                _transition(
                    enrollment, EnrollmentPaused.TYPE, caused_by, at, reason=decision.reason
                )
            ]
        case domain.Resumed():
            return [_transition(decision.enrollment, EnrollmentResumed.TYPE, caused_by, at)]
        case domain.ScheduleNext() | domain.Complete():
            enrollment, sent = decision.enrollment, decision.sent
            step_completed = _transition(
                enrollment,
                EnrollmentStepCompleted.TYPE,
                caused_by,
                at,
                step_index=sent.index,
                provider_message_id=sent.provider_message_id,
            )
            if isinstance(decision, domain.ScheduleNext):
                return [step_completed]
            return [
                step_completed,
                _transition(enrollment, EnrollmentCompleted.TYPE, caused_by, at),
            ]
