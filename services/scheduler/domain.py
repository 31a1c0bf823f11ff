"""Pure decisions of the scheduler: which timer changes an enrollment event asks for."""

from __future__ import annotations

from dataclasses import dataclass
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
