"""Every change a message can cause, by kind: ``messages`` and ``history`` map each to
its outputs."""

from __future__ import annotations

from services.enrollment.dispatch import Granted
from services.enrollment.domain import Admitted, Refused, VersionApplied
from services.enrollment.exits import Exited, ExitPending
from services.enrollment.pauses import Paused, Resumed
from services.enrollment.steps import Complete, ScheduleNext, Settled

Decision = (
    VersionApplied
    | Admitted
    | Refused
    | ScheduleNext
    | Complete
    | Exited
    | ExitPending
    | Settled
    | Paused
    | Resumed
    | Granted
)
"""Every change a message can cause; ``messages`` and ``history`` map each to its outputs."""
