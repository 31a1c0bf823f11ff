"""Pure restore decisions: put back an enrollment that exited by mistake. No I/O.

A restore is a new enrollment of the same record in the same workflow version, at the
step after the old one's last completed step, its delay counted from the restore; the
old enrollment stays exited (an enrollment exits exactly once, and every service that
saw its exit keeps it ended) and is marked as restored, so it is restored once at most.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.enrollment.domain import (
    Enrollment,
    ScheduledStep,
    Status,
    Unchanged,
    WorkflowVersion,
    event_id,
    planned_at,
    scheduled_step,
)
from shared.contracts import Actor
from shared.contracts.commands import ContactDetails
from shared.contracts.events import (
    Rejection,
)
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)


@dataclass(frozen=True, slots=True)
class Exit:
    """An exited enrollment as a restore sees it."""

    enrollment: Enrollment
    contact: ContactDetails | None
    restored_as: uuid.UUID | None
    """The enrollment it was already restored as, if it was."""


@dataclass(frozen=True, slots=True)
class Restored:
    enrollment: Enrollment
    """The new enrollment."""
    restored_from: Enrollment
    scheduled: ScheduledStep
    contact: ContactDetails | None
    actor: Actor


def restored_id_for(account_id: str, command_id: uuid.UUID, old: uuid.UUID) -> uuid.UUID:
    """The id of the enrollment a restore creates: the same on every replay."""
    return event_id("restored_enrollment", account_id, command_id, old)


def next_step_index(enrollment: Enrollment) -> int:
    """The step after the last completed one (a step sent while the exit waited for it
    counts as completed, though the enrollment did not move past it)."""
    return max(enrollment.current_step, enrollment.steps_completed)


def decide_restore(  # noqa: PLR0911 - one refusal a rule
    exit: Exit,
    *,
    version: WorkflowVersion | None,
    workflow_status: WorkflowStatus | None,
    live_in_workflow: bool,
    blocked_by: Rejection | None,
    exclusivity: Rejection | None = None,
    enrollment_id: uuid.UUID,
    actor: Actor,
    now: datetime,
) -> Restored | Unchanged:
    """Restore an exited enrollment, or say why not: it did not exit, was restored
    already, its workflow is paused or deleted, the record is in the workflow again, a
    blocking exclusion matches it (``blocked_by``), the account's exclusivity rule refuses
    it (``exclusivity``: the record is live in another workflow), or no step is left to run.
    The workflow's daily cap is the caller's (``over_cap``), asked of a restore only."""
    old = exit.enrollment
    if old.status is not Status.EXITED:
        return Unchanged(f"the enrollment is {old.status.value}, not exited", "not_exited")
    if exit.restored_as is not None:
        return Unchanged(
            f"the enrollment was already restored as {exit.restored_as}", ("already_restored")
        )
    if workflow_status in (WorkflowStatus.PAUSED, WorkflowStatus.DELETED):
        return Unchanged(
            f"the workflow is {workflow_status.value}", f"workflow_{workflow_status.value}"
        )
    if version is None:
        return Unchanged("the enrollment's workflow version is unknown", "unknown_workflow")
    if live_in_workflow:
        return Unchanged("the record is in this workflow again", "already_enrolled")
    if blocked_by is not None:
        return Unchanged(f"a blocking exclusion matches: {blocked_by.detail}", "exclusion_blocks")
    if exclusivity is not None:
        return Unchanged(exclusivity.detail, exclusivity.code)
    index = next_step_index(old)
    steps = version.definition.steps
    if index >= len(steps):
        return Unchanged("every step was already sent: nothing is left to run", "nothing_left")
    step = steps[index]
    unplanned = now + timedelta(seconds=step.delay_seconds)
    due_at = planned_at(version.definition, old.time_zone, unplanned)  # its send window
    new = Enrollment(
        enrollment_id=enrollment_id,
        account_id=old.account_id,
        workflow_id=old.workflow_id,
        workflow_version=old.workflow_version,
        record=old.record,
        status=Status.ACTIVE,
        current_step=index,
        steps_completed=index,
        enrolled_at=now,
        next_due_at=due_at,
        time_zone=old.time_zone,
    )
    scheduled = scheduled_step(new, step, due_at, unplanned_at=unplanned)
    return Restored(new, old, scheduled, exit.contact, actor)


def over_cap(cap: int) -> Unchanged:
    """The refusal of a restore the workflow's daily cap has no room for today."""
    return Unchanged(
        f"the workflow's daily cap of {cap} enrollments is reached today", "daily_cap_reached"
    )
