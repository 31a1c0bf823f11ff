"""Automatic replies pause, never exit: the pause decision for one enrollment. Pure."""

from __future__ import annotations

from datetime import timedelta

from services.trigger_evaluator.out_of_office import plan_resume
from services.trigger_evaluator.triggers import Signal
from services.trigger_evaluator.views import (
    Candidate,
    Decision,
    EnrollmentStatus,
    Outcome,
    WorkflowKey,
    ignore_decision,
    not_for_this_enrollment,
    pause_message_id,
)
from shared.contracts.commands import PauseReason


def decide_pause(
    signal: Signal, candidate: Candidate, clock_skew: timedelta
) -> Decision | WorkflowKey:
    """An automatic reply pauses its sender's live enrollments until they are back.

    PRODUCT: out-of-office replies pause, never exit; the enrollment resumes on the
    return date plus a margin, after a fallback without one, never after the maximum.
    An enrollment already paused keeps its pause (a person's or an earlier reply's).
    """
    assert signal.auto_reply is not None  # noqa: S101 - only called for auto-replies
    enrollment = candidate.enrollment
    why_not = not_for_this_enrollment(signal, enrollment, clock_skew)
    if why_not is None and enrollment.status is EnrollmentStatus.PAUSED:
        why_not = "the enrollment is already paused"
    if why_not is not None:
        return ignore_decision(signal, candidate, why_not)
    workflow = enrollment.workflow
    if workflow is None:
        return (enrollment.workflow_id, enrollment.workflow_version)
    settings = workflow.settings.out_of_office
    if not settings.pause:
        version = f"workflow {enrollment.workflow_id} v{enrollment.workflow_version}"
        return ignore_decision(
            signal, candidate, f"pausing on automatic replies is off in {version}"
        )
    resume = plan_resume(signal.auto_reply, signal.occurred_at, settings)
    return Decision(
        event=signal,
        outcome=Outcome.PAUSE,
        why=f"{signal.auto_reply.explain()}; resumes at {resume.at.isoformat()} ({resume.why})",
        trigger=None,
        reason=PauseReason.OUT_OF_OFFICE,
        enrollment=enrollment,
        record=enrollment.record,
        matched_by=candidate.matched_by,
        exit_message_id=pause_message_id(
            signal.account_id, signal.message_id, enrollment.enrollment_id
        ),
        resume=resume,
    )
