"""Pure pause decisions: hold an enrollment at its step, until a time or a resume."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from services.enrollment.domain import (
    Enrollment,
    ScheduledStep,
    Status,
    Unchanged,
    WorkflowVersion,
    planned_at,
    scheduled_step,
)
from services.enrollment.errors import MissingWorkflowVersionError
from shared.contracts import Actor


def _code(enrollment: Enrollment) -> str:
    """The answer's code for a pause or resume of an enrollment not in the right state."""
    status = enrollment.status
    if status.live:
        return "already_paused" if status is Status.PAUSED else "not_paused"
    return f"already_{status.value}"


@dataclass(frozen=True, slots=True)
class Paused:
    enrollment: Enrollment
    until: datetime | None
    reason: str
    actor: Actor
    pause_id: uuid.UUID


def decide_pause(
    enrollment: Enrollment,
    *,
    until: datetime | None,
    reason: str,
    actor: Actor,
    pause_id: uuid.UUID,
) -> Paused | Unchanged:
    """Hold an active enrollment at its current step, until ``until`` or a resume.

    ``pause_id`` names this pause (``pause_id_for``): the scheduler's timer resumes only
    the pause it was armed for.
    """
    if enrollment.status is not Status.ACTIVE:
        return Unchanged(f"enrollment is {enrollment.status.value}", _code(enrollment))
    if enrollment.pending_exit is not None:
        return Unchanged("enrollment is exiting", "exiting")
    held = replace(enrollment, status=Status.PAUSED, paused_until=until, pause_id=pause_id)
    return Paused(held, until, reason, actor, pause_id)


@dataclass(frozen=True, slots=True)
class Resumed:
    enrollment: Enrollment
    actor: Actor
    scheduled: ScheduledStep


def decide_resume(
    enrollment: Enrollment,
    workflow: WorkflowVersion | None,
    *,
    actor: Actor,
    now: datetime,
    pause_id: uuid.UUID | None = None,
) -> Resumed | Unchanged:
    """Resume a paused enrollment; its current step runs at once if its time has passed.

    ``workflow`` is the enrollment's version: the step it resumes at comes from it. With
    ``pause_id`` (a timed pause's end), only that pause ends: a timer of a pause that was
    already resumed by hand changes nothing, whatever the enrollment did since.
    """
    if enrollment.status is not Status.PAUSED:
        return Unchanged(f"enrollment is {enrollment.status.value}", _code(enrollment))
    if enrollment.pending_exit is not None:
        return Unchanged("enrollment is exiting", "exiting")
    if pause_id is not None and pause_id != enrollment.pause_id:
        return Unchanged("the resume is for an earlier pause", "stale_pause")
    if workflow is None:
        raise MissingWorkflowVersionError(enrollment.account_id, enrollment.enrollment_id)
    unplanned = max(enrollment.next_due_at or now, now)
    due_at = planned_at(workflow.definition, enrollment.time_zone, unplanned)
    resumed = replace(
        enrollment, status=Status.ACTIVE, next_due_at=due_at, paused_until=None, pause_id=None
    )
    step = workflow.definition.steps[resumed.current_step]
    return Resumed(resumed, actor, scheduled_step(resumed, step, due_at, unplanned_at=unplanned))
