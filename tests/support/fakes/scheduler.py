"""``SchedulerStore`` in memory, with the SQL's semantics; passes tests/contract."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.scheduler.domain import EnrollmentKey, TimedPause
from services.scheduler.ports import ArmTimer, FiredTimer
from shared.contracts.events import StepScheduledPayload

TimerKey = tuple[str, uuid.UUID, int]
ResumeKey = tuple[str, uuid.UUID, uuid.UUID]
"""(account, enrollment, pause)"""


@dataclass
class Timer:
    account_id: str
    step: StepScheduledPayload
    state: str = "pending"
    cancelled_reason: str | None = None


@dataclass
class FakeSchedulerStore:
    timers: dict[TimerKey, Timer] = field(default_factory=dict)
    ended: dict[EnrollmentKey, str] = field(default_factory=dict)
    resumes: dict[ResumeKey, tuple[TimedPause, str]] = field(default_factory=dict)
    """Each timed pause's resume timer and its state (pending or fired)."""
    calls: list[str] = field(default_factory=list)
    """Method names in call order: one call stands for one SQL statement."""

    def snapshot(self) -> object:
        return (
            {k: (t.step, t.state, t.cancelled_reason) for k, t in self.timers.items()},
            dict(self.ended),
            dict(self.resumes),
        )

    async def ended_among(self, keys: Collection[EnrollmentKey]) -> set[EnrollmentKey]:
        self.calls.append("ended_among")
        return {k for k in keys if k in self.ended}

    async def arm_timers(self, timers: Sequence[ArmTimer]) -> None:
        self.calls.append("arm_timers")
        for account_id, step in timers:  # in order, as if one statement each
            key = (account_id, step.enrollment_id, step.step_index)
            known = self.timers.get(key)
            if known is None:
                self.timers[key] = Timer(account_id, step)
            # ON CONFLICT DO UPDATE ... WHERE state = 'cancelled'
            #                               OR (state = 'fired' AND due_at <> EXCLUDED.due_at)
            elif known.state == "cancelled" or (
                known.state == "fired" and known.step.due_at != step.due_at
            ):
                known.step = known.step.model_copy(update={"due_at": step.due_at})
                known.state, known.cancelled_reason = "pending", None

    async def cancel_pending(self, reasons: Mapping[EnrollmentKey, str]) -> Counter[EnrollmentKey]:
        self.calls.append("cancel_pending")
        counts: Counter[EnrollmentKey] = Counter()
        for (account_id, enrollment_id, _), timer in self.timers.items():
            key = (account_id, enrollment_id)
            if key in reasons and timer.state == "pending":
                timer.state, timer.cancelled_reason = "cancelled", reasons[key]
                counts[key] += 1
        self._forget_pending_resumes(reasons.keys())
        return counts

    def _forget_pending_resumes(self, keys: Collection[EnrollmentKey]) -> Counter[EnrollmentKey]:
        counts: Counter[EnrollmentKey] = Counter()
        for key, (pause, state) in list(self.resumes.items()):
            if pause.enrollment in keys and state == "pending":
                del self.resumes[key]
                counts[pause.enrollment] += 1
        return counts

    async def mark_ended(self, outcomes: Mapping[EnrollmentKey, str]) -> None:
        self.calls.append("mark_ended")
        for key, outcome in outcomes.items():
            self.ended.setdefault(key, outcome)

    async def fire_due(self, *, now: datetime, limit: int) -> list[FiredTimer]:
        self.calls.append("fire_due")
        due = sorted(
            (t for t in self.timers.values() if t.state == "pending" and t.step.due_at <= now),
            key=lambda t: t.step.due_at,
        )[:limit]
        fired = []
        for timer in due:
            timer.state = "fired"
            step = timer.step
            fired.append(
                FiredTimer(
                    account_id=timer.account_id,
                    enrollment_id=step.enrollment_id,
                    step_index=step.step_index,
                    workflow_id=step.workflow_id,
                    workflow_version=step.workflow_version,
                    record=step.record,
                    step_id=step.step_id,
                    channel=step.channel,
                    due_at=step.due_at,
                )
            )
        return fired

    async def arm_resumes(self, pauses: Collection[TimedPause]) -> None:
        self.calls.append("arm_resumes")
        for pause in pauses:  # ON CONFLICT DO NOTHING
            self.resumes.setdefault((*pause.enrollment, pause.pause_id), (pause, "pending"))

    async def drop_resumes(self, keys: Collection[EnrollmentKey]) -> Counter[EnrollmentKey]:
        self.calls.append("drop_resumes")
        return self._forget_pending_resumes(keys)

    async def fire_due_resumes(self, *, now: datetime, limit: int) -> list[TimedPause]:
        self.calls.append("fire_due_resumes")
        due = sorted(
            (p for p, state in self.resumes.values() if state == "pending" and p.until <= now),
            key=lambda p: p.until,
        )[:limit]
        for pause in due:
            self.resumes[(*pause.enrollment, pause.pause_id)] = (pause, "fired")
        return due

    def states(
        self, enrollment_id: uuid.UUID, account_id: str
    ) -> dict[int, tuple[str, str | None]]:
        return {
            i: (t.state, t.cancelled_reason)
            for (a, e, i), t in self.timers.items()
            if (a, e) == (account_id, enrollment_id)
        }
