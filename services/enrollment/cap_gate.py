"""The daily cap at admission: which admitted enrolls of a run wait for a later day
(``caps``). Loaded under the capped workflows' locks (``lock_workflows``), so two runs
admitting into one capped workflow count one after the other."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from services.enrollment import caps, domain
from services.enrollment.ports import EnrollmentStore, WorkflowKey
from shared.contracts.commands import Enroll


class CapGate:
    def __init__(
        self,
        workflows: Mapping[WorkflowKey, domain.WorkflowVersion],
        days: Mapping[WorkflowKey, caps.CapDay],
        counts: Mapping[WorkflowKey, int],
        waiting: set[WorkflowKey],
        *,
        released: bool,
    ) -> None:
        self._workflows = workflows
        self._days = days
        self._counts = dict(counts)
        self._waiting = set(waiting)
        self._released = released

    @staticmethod
    async def load(
        store: EnrollmentStore,
        commands: Sequence[Enroll],
        workflows: Mapping[WorkflowKey, domain.WorkflowVersion],
        now: datetime,
        *,
        released: bool,
    ) -> CapGate:
        """``released``: the run decides enrolls that waited for the cap (oldest first),
        not new ones, which queue behind any that wait."""
        capped = sorted(
            {
                key
                for c in commands
                if (key := (c.account_id, c.payload.workflow_id)) in workflows
                and workflows[key].definition.settings.daily_enrollment_cap is not None
            }
        )
        if not capped:
            return CapGate(workflows, {}, {}, set(), released=released)
        await store.lock_workflows(capped)
        days = {k: caps.cap_day(workflows[k].definition.settings, now) for k in capped}
        counts = await store.enrolled_since([(a, w, days[(a, w)].starts_at) for a, w in capped])
        waiting = await store.waiting_for_cap(capped)
        return CapGate(workflows, days, counts, waiting, released=released)

    def defer(
        self, command: Enroll, arrived: Mapping[uuid.UUID, datetime], now: datetime
    ) -> caps.Deferred | None:
        """The wait of an admitted ``command``, or None: it enters now (and counts)."""
        key = (command.account_id, command.payload.workflow_id)
        day = self._days.get(key)
        if day is None:
            return None
        settings = self._workflows[key].definition.settings
        full = caps.over_cap(settings, self._counts.get(key, 0))
        queued = key in self._waiting and not self._released
        if not full and not queued:
            self._counts[key] = self._counts.get(key, 0) + 1
            return None
        self._waiting.add(key)  # later enrolls of the run queue behind this one
        release = caps.next_day(day, settings) if full else day
        cap = settings.daily_enrollment_cap or 0
        arrived_at = arrived.get(command.message_id, now)
        return caps.Deferred(command, cap, release.day, release.starts_at, arrived_at)
