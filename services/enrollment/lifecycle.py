"""Pure workflow lifecycle decisions: pause, resume, delete, the exits they cause (in
chunks), the account's order of workflows, and whether a workflow is active. No I/O.

A paused or deleted workflow exits every enrollment that was live when it paused, through
the normal exit path (``exits.decide_exit``: an enrollment with a granted send waits for
its outcome), in bounded chunks across transactions (``Sweep``), so that 10,000 live
enrollments never make one long transaction. Resuming brings nobody back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from services.enrollment.domain import Admitted, Enrollment, Refused, Unchanged
from services.enrollment.exits import Exited, ExitPending, decide_exit
from shared.contracts import Actor
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    Rejection,
)
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)


@dataclass(frozen=True, slots=True)
class WorkflowState:
    account_id: str
    workflow_id: str
    status: WorkflowStatus
    live: int
    """How many enrollments are live (active or paused)."""
    latest_enrolled_at: datetime | None = None
    """When its newest live enrollment was made (by the clock of the replica that made it)."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """The exits a paused or deleted workflow owes, and how far they went.

    ``cutoff`` bounds the enrollments it exits to those enrolled by the pause: one enrolled
    after a resume is not swept by the pause before it."""

    sweep_id: uuid.UUID
    account_id: str
    workflow_id: str
    reason: ExitReason
    actor: Actor
    cutoff: datetime
    exited: int = 0
    waiting: int = 0
    chunks: int = 0
    done: bool = False


@dataclass(frozen=True, slots=True)
class StatusChanged:
    state: WorkflowState
    actor: Actor
    sweep: Sweep | None
    """The exits the change starts (a pause or a delete with live enrollments)."""


_EXIT_REASON = {
    WorkflowStatus.PAUSED: ExitReason.WORKFLOW_PAUSED,
    WorkflowStatus.DELETED: ExitReason.WORKFLOW_DELETED,
}


def decide_status(
    state: WorkflowState | None,
    wanted: WorkflowStatus,
    *,
    workflow_id: str,
    actor: Actor,
    sweep_id: uuid.UUID,
    now: datetime,
) -> StatusChanged | Unchanged:
    """Pause, resume or delete a workflow. A deleted one stays deleted (no undo); pausing a
    paused one or resuming a running one changes nothing."""
    if state is None:
        return Unchanged(f"no workflow {workflow_id!r} in this account", "unknown_workflow")
    if state.status is WorkflowStatus.DELETED:
        return Unchanged("the workflow is deleted", "workflow_deleted")
    if state.status is wanted:
        code = "already_paused" if wanted is WorkflowStatus.PAUSED else "not_paused"
        return Unchanged(f"the workflow is already {wanted.value}", code)
    reason = _EXIT_REASON.get(wanted)
    sweep = None
    if reason is not None:
        # Every enrollment live now must be swept, whatever the clock of the replica that
        # made it said: one made at a "later" instant than ours is still before this pause.
        cutoff = max(now, state.latest_enrolled_at or now)
        sweep = Sweep(sweep_id, state.account_id, state.workflow_id, reason, actor, cutoff)
    return StatusChanged(replace(state, status=wanted), actor, sweep)


def sweep_chunk(
    sweep: Sweep, live: list[Enrollment], *, limit: int, now: datetime
) -> tuple[Sweep, list[Exited | ExitPending]]:
    """Exit a chunk of the workflow's live enrollments (at most ``limit``, as loaded); the
    sweep is done once a chunk comes back short."""
    decided: list[Exited | ExitPending] = []
    for enrollment in live:
        decision = decide_exit(
            enrollment,
            reason=sweep.reason,
            source=ExitSource.WORKFLOW,
            actor=sweep.actor,
            triggering_event=None,
            agents_may_stop=True,
            now=now,
        )
        if not isinstance(decision, Unchanged):
            decided.append(decision)
    waiting = sum(isinstance(d, ExitPending) for d in decided)
    return replace(
        sweep,
        exited=sweep.exited + len(decided) - waiting,
        waiting=sweep.waiting + waiting,
        chunks=sweep.chunks + 1,
        done=len(live) < limit,
    ), decided


def closed_to_enrollment(
    decision: Admitted | Refused, status: WorkflowStatus | None
) -> Admitted | Refused:
    """An enroll into a paused or deleted workflow is refused, that reason first."""
    if status in (None, WorkflowStatus.RUNNING):
        return decision
    why = (
        "the workflow is paused: it enrolls no one until it is resumed"
        if status is WorkflowStatus.PAUSED
        else "the workflow is deleted"
    )
    closed = Rejection(code=f"workflow_{status.value}", detail=why)
    if isinstance(decision, Refused):
        return replace(decision, rejections=(closed, *decision.rejections))
    enrollment = decision.enrollment
    return Refused(
        (closed,), enrollment.account_id, enrollment.workflow_id, enrollment.record, decision.actor
    )


def deleted_stays_deleted(status: WorkflowStatus | None) -> Unchanged | None:
    """A deleted workflow takes no new version either: it is gone, with no undo."""
    if status is WorkflowStatus.DELETED:
        return Unchanged("the workflow is deleted", "workflow_deleted")
    return None


@dataclass(frozen=True, slots=True)
class Reordered:
    account_id: str
    workflow_ids: tuple[str, ...]
    actor: Actor


def decide_reorder(
    current: list[str], wanted: tuple[str, ...], *, account_id: str, actor: Actor
) -> Reordered | Unchanged:
    """The account's workflows in ``wanted``'s order, the others after them in their
    current order; refused whole if it names a workflow the account does not have."""
    known = set(current)
    if unknown := [w for w in dict.fromkeys(wanted) if w not in known]:
        return Unchanged(f"no workflows {unknown!r} in this account", "unknown_workflow")
    first = list(dict.fromkeys(wanted))
    order = (*first, *(w for w in current if w not in set(first)))
    if list(order) == current:
        return Unchanged("the workflows are already in this order", "unchanged")
    return Reordered(account_id, order, actor)


@dataclass(frozen=True, slots=True)
class ActivityChanged:
    """A workflow got its first live enrollment, or lost its last one: its ``seq``-th
    change."""

    account_id: str
    workflow_id: str
    active: bool
    seq: int
