"""Unenrolled by another workflow: a record entering (or leaving) a workflow that names
others leaves them. Pure."""

from __future__ import annotations

from datetime import timedelta

from services.trigger_evaluator.triggers import Signal
from services.trigger_evaluator.views import (
    Candidate,
    Decision,
    Verdict,
    Waiting,
    WorkflowKey,
    exit_decision,
    ignore_decision,
    not_for_this_enrollment,
)
from shared.contracts.commands import ExitReason
from shared.contracts.events import EnrollmentEnrolled
from shared.contracts.workflow import ExitTrigger


def by_other_workflow(
    signal: Signal, candidates: list[Candidate], clock_skew: timedelta
) -> Verdict:
    """A record entered (or left) a workflow that names others to exit: its live
    enrollments in those workflows exit, if they turned on "unenrolled by another
    workflow". Nothing is recorded when the workflow names none (most enrollments)."""
    source = next(
        (c for c in candidates if c.enrollment.enrollment_id == signal.facts.source_enrollment_id),
        None,
    )
    if source is None:
        return Waiting(signal, "the entering enrollment is not projected yet")
    entering = source.enrollment
    if not any(c.enrollment.status.live and c is not source for c in candidates):
        return []  # the record is in no other workflow: nothing to exit, nothing to wait for
    if entering.workflow is None:
        key = (entering.workflow_id, entering.workflow_version)
        return Waiting(signal, f"workflow {key[0]} v{key[1]} not projected yet", (key,))
    settings = entering.workflow.settings
    entered = signal.event_type == EnrollmentEnrolled.TYPE
    names = settings.exits_workflows_on_enroll if entered else settings.exits_workflows_on_exit
    decisions: list[Decision] = []
    unknown: dict[WorkflowKey, None] = {}
    for candidate in candidates:
        enrollment = candidate.enrollment
        if (
            enrollment is entering
            or enrollment.workflow_id not in names
            or not enrollment.status.live
        ):
            continue
        why_not = not_for_this_enrollment(signal, enrollment, clock_skew)
        version = f"workflow {enrollment.workflow_id} v{enrollment.workflow_version}"
        if why_not is not None:
            decisions.append(ignore_decision(signal, candidate, why_not))
        elif enrollment.workflow is None:
            unknown[(enrollment.workflow_id, enrollment.workflow_version)] = None
        elif ExitTrigger.UNENROLLED_BY_OTHER_WORKFLOW not in enrollment.workflow.exit_triggers:
            why = f"trigger unenrolledby_other_workflow is off in {version}"
            decisions.append(ignore_decision(signal, candidate, why))
        else:
            how = "entered" if entered else "left"
            why = f"the record {how} workflow {entering.workflow_id}, which exits {version}"
            decisions.append(
                exit_decision(signal, candidate, ExitReason.UNENROLLED_BY_OTHER_WORKFLOW, why)
            )
    if unknown:
        versions = ", ".join(f"workflow {w} v{v}" for w, v in unknown)
        return Waiting(signal, f"{versions} not projected yet", tuple(unknown))
    return decisions
