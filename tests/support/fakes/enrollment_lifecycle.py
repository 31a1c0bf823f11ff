"""The lifecycle part of ``FakeEnrollmentStore`` (``LifecycleStore`` in memory, with the
SQL's semantics): workflow status, order and activity, sweeps, restores."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.enrollment.domain import Enrollment, Status, WorkflowVersion
from services.enrollment.lifecycle import ActivityChanged, Sweep, WorkflowState
from services.enrollment.lifecycle_ports import EnrollmentKey, WorkflowKey
from services.enrollment.owners import Owned, OwnerPolicy
from services.enrollment.ports import HistoryEntry
from services.enrollment.restore import Exit, Restored
from shared.contracts import Actor, Message
from shared.contracts.commands import ContactDetails, ExitReason
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)


def _busy_then_id(e: Enrollment) -> tuple[bool, uuid.UUID]:
    return (e.dispatch is not None or e.pending_exit is not None, e.enrollment_id)


def _key(enrollment: Enrollment) -> EnrollmentKey:
    return (enrollment.account_id, enrollment.enrollment_id)


@dataclass
class LifecycleState:
    """What ``FakeLifecycleStore`` adds to the fake store's state."""

    statuses: dict[WorkflowKey, WorkflowStatus] = field(default_factory=dict)
    """Workflows that are not running (a workflow in ``heads`` and not here runs)."""
    positions: dict[WorkflowKey, int] = field(default_factory=dict)
    active: dict[WorkflowKey, bool] = field(default_factory=dict)
    activity_seq: dict[WorkflowKey, int] = field(default_factory=dict)
    sweeps: dict[tuple[str, uuid.UUID], tuple[Sweep, Message]] = field(default_factory=dict)
    """Every sweep, in the order it started, with the command that started it."""
    restored_as: dict[EnrollmentKey, uuid.UUID] = field(default_factory=dict)
    restored_from: dict[EnrollmentKey, uuid.UUID] = field(default_factory=dict)
    owner_policies: dict[str, OwnerPolicy] = field(default_factory=dict)

    def snapshot(self) -> object:
        return (
            dict(self.statuses),
            dict(self.positions),
            dict(self.active),
            dict(self.activity_seq),
            list(self.sweeps.items()),
            dict(self.restored_as),
            dict(self.restored_from),
            dict(self.owner_policies),
        )


class FakeLifecycleStore:
    """The ``LifecycleStore`` methods of ``FakeEnrollmentStore``, on its ``lifecycle``."""

    lifecycle: LifecycleState
    heads: dict[WorkflowKey, int]
    versions: dict[tuple[str, str, int], tuple[WorkflowVersion, str]]
    enrollments: dict[EnrollmentKey, Enrollment]
    enrolled_with: dict[EnrollmentKey, tuple[ContactDetails | None, Actor]]
    calls: list[str]
    entries: list[HistoryEntry]

    def _called(self, name: str, rows: Sequence[object]) -> None:
        raise NotImplementedError

    def _live(self, key: WorkflowKey) -> list[Enrollment]:
        return [
            e
            for e in self.enrollments.values()
            if (e.account_id, e.workflow_id) == key and e.status.live
        ]

    def _status(self, key: WorkflowKey) -> WorkflowStatus:
        return self.lifecycle.statuses.get(key, WorkflowStatus.RUNNING)

    async def workflow_states_for_update(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowState]:
        self._called("workflow_states_for_update", keys)
        states = {}
        for key in keys:
            if key in self.heads:
                live = self._live(key)
                latest = max((e.enrolled_at for e in live), default=None)
                states[key] = WorkflowState(*key, self._status(key), len(live), latest)
        return states

    async def workflow_statuses(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowStatus]:
        self._called("workflow_statuses", keys)
        return {key: self._status(key) for key in keys if key in self.heads}

    async def set_workflow_statuses(self, states: Sequence[WorkflowState]) -> None:
        self._called("set_workflow_statuses", states)
        for state in states:
            key = (state.account_id, state.workflow_id)
            if key in self.heads:
                self.lifecycle.statuses[key] = state.status

    async def start_sweeps(self, sweeps: Sequence[tuple[Sweep, Message]]) -> None:
        self._called("start_sweeps", sweeps)
        for sweep, command in sweeps:
            self.lifecycle.sweeps.setdefault((sweep.account_id, sweep.sweep_id), (sweep, command))

    async def next_sweep_for_update(self) -> tuple[Sweep, Message] | None:
        self._called("next_sweep_for_update", [None])
        return next((s for s in self.lifecycle.sweeps.values() if not s[0].done), None)

    async def live_in_workflow_for_update(self, sweep: Sweep, *, limit: int) -> list[Enrollment]:
        self._called("live_in_workflow_for_update", [sweep])
        live = [
            e
            for e in self._live((sweep.account_id, sweep.workflow_id))
            if e.pending_exit is None and e.enrolled_at <= sweep.cutoff
        ]
        return sorted(live, key=_key)[:limit]

    async def live_of_version_for_update(
        self, key: WorkflowKey, version: int, *, limit: int
    ) -> list[Enrollment]:
        self._called("live_of_version_for_update", [key])
        live = [e for e in self._live(key) if e.workflow_version == version]
        return sorted(live, key=_busy_then_id)[:limit]

    async def save_migrations(self, enrollments: Sequence[Enrollment]) -> None:
        self._called("save_migrations", enrollments)
        for e in enrollments:
            known = self.enrollments.get(_key(e))
            if known is not None:
                self.enrollments[_key(e)] = replace(
                    known,
                    workflow_version=e.workflow_version,
                    current_step=e.current_step,
                    steps_completed=e.steps_completed,
                )

    async def save_sweep(self, sweep: Sweep) -> None:
        self._called("save_sweep", [sweep])
        key = (sweep.account_id, sweep.sweep_id)
        if key in self.lifecycle.sweeps:
            self.lifecycle.sweeps[key] = (sweep, self.lifecycle.sweeps[key][1])

    async def refresh_activity(self) -> list[ActivityChanged]:
        self.calls.append("refresh_activity")
        changed = []
        for key in sorted(self.heads):
            live = bool(self._live(key))
            if live != self.lifecycle.active.get(key, False):
                self.lifecycle.active[key] = live
                self.lifecycle.activity_seq[key] = self.lifecycle.activity_seq.get(key, 0) + 1
                changed.append(ActivityChanged(*key, live, self.lifecycle.activity_seq[key]))
        return changed

    async def workflow_order_for_update(self, account_id: str) -> list[str]:
        self._called("workflow_order_for_update", [account_id])
        mine = [k for k in self.heads if k[0] == account_id and self._status(k) != "deleted"]
        ordered = sorted(
            mine,
            key=lambda k: (
                k not in self.lifecycle.positions,
                self.lifecycle.positions.get(k, 0),
                k[1],
            ),
        )
        return [k[1] for k in ordered]

    async def set_workflow_order(self, account_id: str, workflow_ids: Sequence[str]) -> None:
        self._called("set_workflow_order", workflow_ids)
        for n, workflow_id in enumerate(workflow_ids, start=1):
            if (account_id, workflow_id) in self.heads:
                self.lifecycle.positions[(account_id, workflow_id)] = n

    def _exit(self, enrollment: Enrollment) -> Exit:
        key = _key(enrollment)
        contact = self.enrolled_with[key][0] if key in self.enrolled_with else None
        return Exit(enrollment, contact, self.lifecycle.restored_as.get(key))

    async def exits_for_update(self, keys: Sequence[EnrollmentKey]) -> list[Exit]:
        self._called("exits_for_update", keys)
        found = (e for key in set(keys) if (e := self.enrollments.get(key)) is not None)
        return [self._exit(e) for e in sorted(found, key=_key)]

    async def exits_in_workflow_for_update(
        self,
        key: WorkflowKey,
        *,
        reason: ExitReason | None,
        exited_from: datetime | None,
        exited_until: datetime | None,
        limit: int,
        rule_id: str | None = None,
        rule_version: int | None = None,
    ) -> list[Exit]:
        self._called("exits_in_workflow_for_update", [key])
        found = [
            e
            for e in self.enrollments.values()
            if (e.account_id, e.workflow_id) == key
            and e.status is Status.EXITED
            and _key(e) not in self.lifecycle.restored_as
            and reason in (None, e.exit_reason)
            and e.ended_at is not None
            and (exited_from is None or e.ended_at >= exited_from)
            and (exited_until is None or e.ended_at < exited_until)
        ]
        if rule_id is not None:
            found = [e for e in found if self._exited_by(e, rule_id, rule_version)]
        found.sort(key=lambda e: (e.ended_at, e.enrollment_id))
        return [self._exit(e) for e in found[:limit]]

    async def owned_workflows_for_update(self, account_id: str, user_id: str) -> list[Owned]:
        self._called("owned_workflows_for_update", [user_id])
        owned = []
        for key in sorted(self.heads):
            version, digest = self.versions[(*key, self.heads[key])]
            if (
                key[0] == account_id
                and self._status(key) is not WorkflowStatus.DELETED
                and version.definition.owner_user_id == user_id
            ):
                state = WorkflowState(*key, self._status(key), len(self._live(key)))
                owned.append(Owned(state, version, digest))
        return owned

    async def owner_policy(self, account_id: str) -> OwnerPolicy:
        self._called("owner_policy", [account_id])
        return self.lifecycle.owner_policies.get(account_id, OwnerPolicy())

    async def set_owner_policy(self, account_id: str, setting: OwnerPolicy) -> None:
        self._called("set_owner_policy", [account_id])
        self.lifecycle.owner_policies[account_id] = setting

    def _exited_by(self, enrollment: Enrollment, rule_id: str, version: int | None) -> bool:
        for entry in self.entries:
            hit = entry.detail.get("exclusion")
            if (
                (entry.account_id, entry.enrollment_id) == _key(enrollment)
                and entry.event_type == "enrollment.exited"
                and hit is not None
                and hit["rule_id"] == rule_id
                and version in (None, hit["version"])
            ):
                return True
        return False

    async def save_restores(self, restored: Sequence[Restored]) -> None:
        self._called("save_restores", restored)
        for item in restored:
            new, old = item.enrollment, item.restored_from
            live = [(e.account_id, e.workflow_id, e.record) for e in self.enrollments.values()]
            if _key(new) in self.enrollments or (
                (new.account_id, new.workflow_id, new.record) in live
                and any(
                    e.status.live
                    and (e.account_id, e.workflow_id, e.record)
                    == (new.account_id, new.workflow_id, new.record)
                    for e in self.enrollments.values()
                )
            ):
                raise ValueError("unique violation: enrollments")
            self.enrollments[_key(new)] = replace(new)
            self.enrolled_with[_key(new)] = (item.contact, item.actor)
            self.lifecycle.restored_from[_key(new)] = old.enrollment_id
            self.lifecycle.restored_as[_key(old)] = new.enrollment_id
