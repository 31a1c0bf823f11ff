"""Pure decisions of the scheduler: which timer changes an enrollment event asks for."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.contracts import derived_message_id

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
