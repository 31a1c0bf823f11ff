"""Every change a message can cause, by kind: ``messages`` and ``history`` map each to
its outputs."""

from __future__ import annotations

from services.enrollment.answers import Answer
from services.enrollment.caps import Deferred
from services.enrollment.dispatch import Granted
from services.enrollment.domain import Admitted, Refused, VersionApplied
from services.enrollment.exclusivity import ExclusivitySet
from services.enrollment.exits import Exited, ExitPending
from services.enrollment.lifecycle import Reordered, StatusChanged
from services.enrollment.owners import OwnerRemovalSet, OwnerRemoved
from services.enrollment.pauses import Paused, Resumed
from services.enrollment.restore import Restored
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
    | Answer
    | StatusChanged
    | Reordered
    | Restored
    | OwnerRemoved
    | OwnerRemovalSet
    | ExclusivitySet
    | Deferred
)
"""Every change a message can cause; ``messages`` and ``history`` map each to its outputs."""
