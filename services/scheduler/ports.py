"""What the scheduler needs from storage: the ``SchedulerStore`` port.

``repository.PostgresSchedulerStore`` is the real one; ``tests/support/fakes`` holds an
in-memory one that passes the same contract suite (``tests/contract``).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.scheduler.domain import EnrollmentKey, TimedPause
from shared.contracts import RecordRef
from shared.contracts.events import StepScheduledPayload
from shared.contracts.inbound import Channel

ArmTimer = tuple[str, StepScheduledPayload]
"""(account id, scheduled step): one timer to hold."""


@dataclass(frozen=True, slots=True)
class FiredTimer:
    """A timer whose time came: everything its ``step.due`` carries."""

    account_id: str
    enrollment_id: uuid.UUID
    step_index: int
    workflow_id: str
    workflow_version: int
    record: RecordRef
    step_id: str
    channel: Channel
    due_at: datetime


class SchedulerStore(Protocol):
    """Each method takes many rows and costs one statement however many there are."""

    async def ended_among(self, keys: Collection[EnrollmentKey]) -> set[EnrollmentKey]:
        """Those of ``keys`` that ended (a late step must not arm a timer for them)."""
        ...

    async def arm_timers(self, timers: Sequence[ArmTimer]) -> None:
        """Hold timers in order, as if one statement per timer.

        A step scheduled again (resumed after a pause) re-arms its timer, whether the
        pause cancelled it or it fired and the send was then cancelled; a fired timer is
        re-armed only for a new due time, so a replay changes nothing.
        """
        ...

    async def cancel_pending(self, reasons: Mapping[EnrollmentKey, str]) -> Counter[EnrollmentKey]:
        """Cancel the pending step timers of each enrollment with its reason, and forget
        its pending resume timers as ``drop_resumes`` does; counts the step timers."""
        ...

    async def mark_ended(self, outcomes: Mapping[EnrollmentKey, str]) -> None:
        """Remember ended enrollments; the first outcome recorded is kept."""
        ...

    async def fire_due(self, *, now: datetime, limit: int) -> list[FiredTimer]:
        """Mark up to ``limit`` timers due at ``now`` fired, earliest first; replicas skip
        each other's rows."""
        ...

    async def arm_resumes(self, pauses: Collection[TimedPause]) -> None:
        """Hold a resume timer per timed pause; one already held (pending or fired) is
        left as it is, so a replayed pause never resumes twice."""
        ...

    async def drop_resumes(self, keys: Collection[EnrollmentKey]) -> Counter[EnrollmentKey]:
        """Forget the pending resume timers of each enrollment (it resumed or ended);
        counts them. Fired ones stay, as the record that they fired."""
        ...

    async def fire_due_resumes(self, *, now: datetime, limit: int) -> list[TimedPause]:
        """Mark up to ``limit`` resume timers due at ``now`` fired, earliest first;
        replicas skip each other's rows."""
        ...
