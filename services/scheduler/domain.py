"""Pure decisions of the scheduler: which timer changes an enrollment event asks for."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.contracts import RecordRef, derived_message_id

EnrollmentKey = tuple[str, uuid.UUID]
"""(account id, enrollment id): enrollment ids are only ever compared within an account."""


class TimerAction(StrEnum):
    SCHEDULE = "schedule"
    CANCEL = "cancel"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class TimerDecision:
    action: TimerAction
    why: str


ENDING_EVENTS = {
    "enrollment.exited": "exited",
    "enrollment.completed": "completed",
}


def on_step_scheduled(*, enrollment_ended: bool) -> TimerDecision:
    """A step was scheduled: hold a timer unless the enrollment already ended."""
    if enrollment_ended:
        return TimerDecision(TimerAction.IGNORE, "enrollment already ended")
    return TimerDecision(TimerAction.SCHEDULE, "step scheduled")


def on_enrollment_event(event_type: str) -> TimerDecision:
    """Exits, completions and pauses void every pending timer of the enrollment at once."""
    if event_type in ENDING_EVENTS:
        return TimerDecision(TimerAction.CANCEL, ENDING_EVENTS[event_type])
    if event_type == "enrollment.paused":
        return TimerDecision(TimerAction.CANCEL, "paused")
    return TimerDecision(TimerAction.IGNORE, "no timer change")


@dataclass(frozen=True, slots=True)
class StopPlan:
    """What a run of exits, completions and pauses changes, one entry per enrollment."""

    ended: dict[EnrollmentKey, str] = field(default_factory=dict)
    """Enrollment -> outcome to remember (exits and completions only)."""
    cancel: dict[EnrollmentKey, str] = field(default_factory=dict)
    """Enrollment -> reason its pending timers are cancelled with."""


def plan_stops(events: Iterable[tuple[EnrollmentKey, str]]) -> StopPlan:
    """Fold a run of ((account, enrollment), event type), in order, into one change per
    enrollment.

    Applied one by one, the first stop of an enrollment cancels its pending timers and the
    later ones find none left (no step is scheduled within such a run); the first exit or
    completion is the outcome remembered. So the first of each wins.
    """
    plan = StopPlan()
    for key, event_type in events:
        decision = on_enrollment_event(event_type)
        if decision.action is not TimerAction.CANCEL:
            continue
        if event_type in ENDING_EVENTS:
            plan.ended.setdefault(key, decision.why)
        plan.cancel.setdefault(key, decision.why)
    return plan


def step_due_id(
    account_id: str, enrollment_id: uuid.UUID, step_index: int, due_at: datetime
) -> uuid.UUID:
    """The id of the ``step.due`` a timer fires.

    A timer fired twice for the same due time publishes one id (messaging drops the
    repeat); a step re-armed after a pause has a new due time and so a new id. The account
    is part of it: enrollment ids are only unique within an account.
    """
    return derived_message_id("step.due", account_id, enrollment_id, step_index, due_at.isoformat())


# --- timed pauses ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimedPause:
    """A pause with an end: the scheduler resumes the enrollment then, unless it resumed,
    exited or completed before. ``pause_id`` is the id of its ``enrollment.paused``."""

    account_id: str
    enrollment_id: uuid.UUID
    pause_id: uuid.UUID
    workflow_id: str
    record: RecordRef
    until: datetime
    correlation_id: uuid.UUID | None = None

    @property
    def enrollment(self) -> EnrollmentKey:
        return (self.account_id, self.enrollment_id)


ENDS_A_PAUSE = {
    "enrollment.exited",
    "enrollment.completed",
    "enrollment.paused",
    "enrollment.resumed",
}
"""Events after which a pending resume of the enrollment's earlier pause has nothing left to
resume (a new pause ends the earlier one too; a timed one then arms its own)."""


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a run of enrollment events changes in resume timers."""

    drop: set[EnrollmentKey] = field(default_factory=set)
    """Enrollments whose resume timers armed before the run are void (first)."""
    arm: dict[tuple[EnrollmentKey, uuid.UUID], TimedPause] = field(default_factory=dict)
    """The run's timed pauses still to resume at its end, by (enrollment, pause) (then)."""


def plan_resumes(events: Iterable[tuple[EnrollmentKey, str, TimedPause | None]]) -> ResumePlan:
    """Fold a run of (enrollment, event type, its timed pause if any), in order.

    Applied one by one, every stop or resume of an enrollment voids its pending resume
    timer and a timed pause then arms its own; voiding first what was armed before the
    run, then arming what of the run's own pauses was not voided later, ends the same.
    """
    plan = ResumePlan()
    for key, event_type, pause in events:
        if event_type not in ENDS_A_PAUSE:
            continue
        plan.drop.add(key)
        for armed in [k for k in plan.arm if k[0] == key]:
            del plan.arm[armed]
        if pause is not None:
            plan.arm[(key, pause.pause_id)] = pause
    return plan


def resume_id(account_id: str, enrollment_id: uuid.UUID, pause_id: uuid.UUID) -> uuid.UUID:
    """The id of the ``enrollment.resume`` that ends a timed pause: one per pause, however
    often its timer fires, so enrollment applies it once."""
    return derived_message_id("enrollment.resume", account_id, enrollment_id, pause_id)
