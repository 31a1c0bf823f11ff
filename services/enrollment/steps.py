"""Pure decisions on messaging's reports of a step: sent, failed or cancelled. No I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.enrollment.domain import (
    Enrollment,
    ScheduledStep,
    Status,
    Unchanged,
    planned_at,
    scheduled_step,
)
from services.enrollment.exits import (
    Exited,
    ExitPending,
    SentStep,
    UnsentStep,
    commit_exit,
    decide_exit,
    exit_reason_for,
)
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import ExitSource, TriggeringEvent
from shared.contracts.workflow import Step, WorkflowDefinition


@dataclass(frozen=True, slots=True)
class ScheduleNext:
    enrollment: Enrollment
    sent: SentStep
    scheduled: ScheduledStep

    @property
    def step(self) -> Step:
        return self.scheduled.step


@dataclass(frozen=True, slots=True)
class Complete:
    enrollment: Enrollment
    sent: SentStep


def _settled(
    enrollment: Enrollment, step_index: int, dispatch_id: uuid.UUID | None = None
) -> Enrollment:
    """The enrollment once messaging reported the outcome of step ``step_index``: its
    dispatch, if it was that step's, is over. An answer naming another dispatch of that
    step (an earlier grant, cancelled for a pause, then granted again) settles nothing."""
    dispatch = enrollment.dispatch
    if dispatch is None or dispatch.step_index != step_index:
        return enrollment
    if dispatch_id is not None and dispatch_id != dispatch.dispatch_id:
        return enrollment
    return replace(enrollment, dispatch=None)


def on_step_sent(
    enrollment: Enrollment, definition: WorkflowDefinition, sent: SentStep, *, now: datetime
) -> ScheduleNext | Complete | Exited | Unchanged:
    """A step went out: schedule the next one after its delay, or complete; an enrollment
    that was exiting while it went out exits now, the step counted.

    A paused enrollment still records a step that was already on its way when it paused
    (resuming schedules the next one).
    """
    if not enrollment.status.live:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    if sent.index != enrollment.current_step:
        return Unchanged(f"step {sent.index} is not the current step {enrollment.current_step}")
    done = replace(_settled(enrollment, sent.index), steps_completed=enrollment.steps_completed + 1)
    if done.pending_exit is not None:
        return replace(commit_exit(done, now=now), sent=sent)
    following = sent.index + 1
    if following >= len(definition.steps):
        completed = replace(done, status=Status.COMPLETED, next_due_at=None, ended_at=sent.sent_at)
        return Complete(completed, sent)
    step = definition.steps[following]
    unplanned = sent.sent_at + timedelta(seconds=step.delay_seconds)
    due_at = planned_at(definition, enrollment.time_zone, unplanned)
    after = replace(done, current_step=following, next_due_at=due_at)
    return ScheduleNext(after, sent, scheduled_step(after, step, due_at, unplanned_at=unplanned))


@dataclass(frozen=True, slots=True)
class Settled:
    """Messaging reported that the granted step will not go out now (cancelled for a
    pause): the grant is over, with nothing to publish. A resume grants the step again."""

    enrollment: Enrollment


def on_step_unsent(
    enrollment: Enrollment, unsent: UnsentStep, *, trigger: TriggeringEvent, now: datetime
) -> Exited | Settled | Unchanged:
    """Exit an enrollment whose current step will never be sent (it would wait forever
    at that step, and block the record's re-enrollment); ``trigger`` is messaging's
    report of it. Exits once, like any exit."""
    if enrollment.status.live and unsent.index != enrollment.current_step:
        return Unchanged(f"step {unsent.index} is not the current step {enrollment.current_step}")
    settled = _settled(enrollment, unsent.index, unsent.dispatch_id)
    if settled.status.live and settled.pending_exit is not None:
        # The exit was waiting for this answer: it commits with its own reason.
        return replace(commit_exit(settled, now=now), unsent=unsent)
    reason = exit_reason_for(unsent.kind)
    if reason is None:
        if settled != enrollment:
            return Settled(settled)
        return Unchanged(f"the send was cancelled ({unsent.kind.value}): nothing to do")
    enrollment = settled
    decision = decide_exit(
        enrollment,
        reason=reason,
        source=ExitSource.TRIGGER,
        actor=SYSTEM_ACTOR,
        triggering_event=trigger,
        agents_may_stop=True,
        now=now,
    )
    if isinstance(decision, ExitPending):  # pragma: no cover - settled above: none is out
        raise TypeError("an exit cannot wait for the step that was just settled")
    if isinstance(decision, Unchanged):
        return decision
    return replace(decision, unsent=unsent)
