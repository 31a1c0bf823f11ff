"""Pure decisions of the scheduler: which timer changes an enrollment event asks for."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


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

    ended: dict[uuid.UUID, str] = field(default_factory=dict)
    """Enrollment -> outcome to remember (exits and completions only)."""
    cancel: dict[uuid.UUID, str] = field(default_factory=dict)
    """Enrollment -> reason its pending timers are cancelled with."""


def plan_stops(events: Iterable[tuple[uuid.UUID, str]]) -> StopPlan:
    """Fold a run of (enrollment, event type), in order, into one change per enrollment.

    Applied one by one, the first stop of an enrollment cancels its pending timers and the
    later ones find none left (no step is scheduled within such a run); the first exit or
    completion is the outcome remembered. So the first of each wins.
    """
    plan = StopPlan()
    for enrollment_id, event_type in events:
        decision = on_enrollment_event(event_type)
        if decision.action is not TimerAction.CANCEL:
            continue
        if event_type in ENDING_EVENTS:
            plan.ended.setdefault(enrollment_id, decision.why)
        plan.cancel.setdefault(enrollment_id, decision.why)
    return plan
