"""``EnrollmentStore`` in memory, with the SQL's semantics; passes tests/contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import asyncpg

from services.enrollment.domain import Admitted, Enrollment, Status, VersionApplied, WorkflowVersion
from services.enrollment.exits import Exited
from services.enrollment.ports import (
    EnrollmentKey,
    HistoryEntry,
    ParkedEnroll,
    RecordKey,
    VersionKey,
    WorkflowHead,
    WorkflowKey,
    WorkflowRecordKey,
)
from shared.contracts import Actor
from shared.contracts.commands import ContactDetails, Enroll, ExitSource, TriggeringEvent
from tests.support.fakes.enrollment_lifecycle import FakeLifecycleStore, LifecycleState
from tests.support.fakes.enrollment_rules import FakeRulesStore, RulesState
from tests.support.fakes.exclusions import FakeExclusionStore

ExitDetails = tuple[ExitSource, Actor, TriggeringEvent | None]
"""What an exit saves beyond the enrollment: (source, actor, triggering event)."""


def _key(enrollment: Enrollment) -> EnrollmentKey:
    return (enrollment.account_id, enrollment.enrollment_id)


def _locked_in_order(found: Iterable[Enrollment]) -> list[Enrollment]:
    """As the SQL returns them: locked in id order, then oldest first."""
    return sorted(sorted(found, key=_key), key=lambda e: e.enrolled_at)


def _unique_violation(what: str) -> asyncpg.UniqueViolationError:
    return asyncpg.UniqueViolationError(f"duplicate key value violates unique constraint: {what}")


@dataclass
class FakeEnrollmentStore(FakeExclusionStore, FakeLifecycleStore, FakeRulesStore):
    versions: dict[VersionKey, tuple[WorkflowVersion, str]] = field(default_factory=dict)
    """Every workflow version and its definition hash."""
    heads: dict[WorkflowKey, int] = field(default_factory=dict)
    """Each workflow's current version."""
    enrollments: dict[EnrollmentKey, Enrollment] = field(default_factory=dict)
    enrolled_with: dict[EnrollmentKey, tuple[ContactDetails | None, Actor]] = field(
        default_factory=dict
    )
    exits: dict[EnrollmentKey, ExitDetails] = field(default_factory=dict)
    entries: list[HistoryEntry] = field(default_factory=list)
    """The history, in order."""
    parked: dict[tuple[str, uuid.UUID], ParkedEnroll] = field(default_factory=dict)
    """Enrolls waiting for their workflow, by (account, message id), in arrival order."""
    locked: set[WorkflowKey] = field(default_factory=set)
    """Workflows ``lock_workflows`` was asked for (a lock in the SQL store)."""
    lifecycle: LifecycleState = field(default_factory=LifecycleState)
    """Workflow status, order and activity, sweeps, restores (``FakeLifecycleStore``)."""
    rules: RulesState = field(default_factory=RulesState)
    """The account's exclusivity setting, records locked (``FakeRulesStore``)."""
    calls: list[str] = field(default_factory=list)
    """Method names in call order, each standing for one SQL statement (none is run for
    no rows, as in the SQL store)."""

    def snapshot(self) -> object:
        return (
            dict(self.versions),
            dict(self.heads),
            dict(self.enrollments),
            dict(self.enrolled_with),
            dict(self.exits),
            list(self.entries),
            list(self.parked.items()),
            self.lifecycle.snapshot(),
            self.exclusion_snapshot(),
            self.rules.snapshot(),
        )

    @property
    def history(self) -> list[tuple[str, object, str]]:
        """(account, enrollment id or None, event type) of each history entry, in order."""
        return [(h.account_id, h.enrollment_id, h.event_type) for h in self.entries]

    def _called(self, name: str, rows: Sequence[object]) -> None:
        if rows:
            self.calls.append(name)

    async def workflow_heads(self, keys: Sequence[WorkflowKey]) -> dict[WorkflowKey, WorkflowHead]:
        self._called("workflow_heads", keys)
        return {
            key: (version, self.versions[(*key, version)][1])
            for key in keys
            if (version := self.heads.get(key)) is not None
        }

    async def add_workflow_versions(self, applied: Sequence[VersionApplied]) -> None:
        self._called("add_workflow_versions", applied)
        keys = [(a.account_id, a.definition.workflow_id, a.version) for a in applied]
        if len(set(keys)) < len(keys) or any(k in self.versions for k in keys):
            raise _unique_violation("workflow_versions_pkey")
        for key, version in zip(keys, applied, strict=True):
            self.versions[key] = (
                WorkflowVersion(*key, version.definition),
                version.definition_hash,
            )
            self.heads[key[:2]] = version.version

    def _version(self, key: VersionKey) -> WorkflowVersion | None:
        found = self.versions.get(key)
        return None if found is None else found[0]

    async def current_workflows(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowVersion]:
        self._called("current_workflows", keys)
        found = {}
        for key in keys:
            version = self.heads.get(key)
            if version is not None and (v := self._version((*key, version))) is not None:
                found[key] = v
        return found

    async def workflow_versions(
        self, keys: Sequence[VersionKey]
    ) -> dict[VersionKey, WorkflowVersion]:
        self._called("workflow_versions", keys)
        return {k: v for k in keys if (v := self._version(k)) is not None}

    async def enrollments_in_workflows_for_update(
        self, keys: Sequence[WorkflowRecordKey]
    ) -> list[Enrollment]:
        self._called("enrollments_in_workflows_for_update", keys)
        wanted = set(keys)
        return _locked_in_order(
            e
            for e in self.enrollments.values()
            if (e.account_id, e.workflow_id, e.record) in wanted
        )

    async def live_enrollments_for_update(self, records: Sequence[RecordKey]) -> list[Enrollment]:
        self._called("live_enrollments_for_update", records)
        wanted = set(records)
        return _locked_in_order(
            e
            for e in self.enrollments.values()
            if (e.account_id, e.record) in wanted and e.status.live
        )

    async def enrollments_for_update(self, keys: Sequence[EnrollmentKey]) -> list[Enrollment]:
        self._called("enrollments_for_update", keys)
        return sorted(
            (e for key in set(keys) if (e := self.enrollments.get(key)) is not None), key=_key
        )

    async def insert_enrollments(self, admitted: Sequence[Admitted]) -> None:
        self._called("insert_enrollments", admitted)
        new = [a.enrollment for a in admitted]
        keys = [_key(e) for e in new]
        if len(set(keys)) < len(keys) or any(k in self.enrollments for k in keys):
            raise _unique_violation("enrollments_pkey")
        live = [
            (e.account_id, e.workflow_id, e.record)
            for e in [*self.enrollments.values(), *new]
            if e.status.live
        ]
        if len(set(live)) < len(live):
            raise _unique_violation("enrollments_one_live_per_record")
        for item in admitted:
            key = _key(item.enrollment)
            self.enrollments[key] = item.enrollment
            self.enrolled_with[key] = (item.contact, item.actor)

    async def save_progress(self, enrollments: Sequence[Enrollment]) -> None:
        self._called("save_progress", enrollments)
        for enrollment in enrollments:  # in order: the last state wins
            known = self.enrollments.get(_key(enrollment))
            if known is None:
                continue  # an UPDATE that matches no row
            self.enrollments[_key(enrollment)] = replace(
                known,
                status=enrollment.status,
                current_step=enrollment.current_step,
                steps_completed=enrollment.steps_completed,
                next_due_at=enrollment.next_due_at,
                ended_at=enrollment.ended_at,
                paused_until=enrollment.paused_until,
                pause_id=enrollment.pause_id,
                dispatch=enrollment.dispatch,
                pending_exit=enrollment.pending_exit,
            )

    async def save_exits(self, exits: Sequence[Exited]) -> None:
        self._called("save_exits", exits)
        for exit in exits:  # in order: the last one wins
            key = _key(exit.enrollment)
            known = self.enrollments.get(key)
            if known is None:
                continue  # an UPDATE that matches no row
            self.enrollments[key] = replace(
                known,
                status=Status.EXITED,
                next_due_at=None,
                ended_at=exit.enrollment.ended_at,
                exit_reason=exit.reason,
                steps_completed=exit.enrollment.steps_completed,
                dispatch=None,
                pending_exit=None,
            )
            self.exits[key] = (exit.source, exit.actor, exit.triggering_event)

    async def lapsed_exits_for_update(
        self, *, lapsed_before: datetime, limit: int
    ) -> list[Enrollment]:
        self._called("lapsed_exits_for_update", [lapsed_before])
        lapsed = [
            e
            for e in self.enrollments.values()
            if e.pending_exit is not None
            and e.dispatch is not None
            and e.dispatch.lease_until < lapsed_before
        ]
        return sorted(
            lapsed, key=lambda e: e.dispatch.lease_until if e.dispatch else lapsed_before
        )[:limit]

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        self._called("add_history", entries)
        self.entries.extend(entries)

    async def lock_workflows(self, keys: Sequence[WorkflowKey]) -> None:
        self._called("lock_workflows", keys)
        self.locked.update(keys)

    async def park_enrolls(self, parked: Sequence[ParkedEnroll]) -> None:
        self._called("park_enrolls", parked)
        for item in parked:  # ON CONFLICT DO NOTHING
            self.parked.setdefault((item.command.account_id, item.command.message_id), item)

    async def take_parked(self, keys: Sequence[WorkflowKey]) -> list[Enroll]:
        self._called("take_parked", keys)
        return self._take(
            [k for k, p in self.parked.items() if p.workflow in set(keys) and p.release_at is None]
        )

    async def take_expired_parked(self, *, parked_before: datetime, limit: int) -> list[Enroll]:
        self.calls.append("take_expired_parked")
        expired = [
            k
            for k, p in self.parked.items()
            if p.parked_at < parked_before and p.release_at is None
        ]
        oldest = sorted(expired, key=lambda k: self.parked[k].parked_at)[:limit]
        return self._take([k for k in self.parked if k in set(oldest)])

    def _take(self, keys: list[tuple[str, uuid.UUID]]) -> list[Enroll]:
        return [self.parked.pop(key).command for key in keys]
