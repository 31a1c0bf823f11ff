"""What the enrollment handlers need from storage: the ``EnrollmentStore`` port.

``repository.PostgresEnrollmentStore`` is the real one; ``tests/support/fakes`` holds an
in-memory one that passes the same contract suite (``tests/contract``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.enrollment.domain import Admitted, Enrollment, VersionApplied, WorkflowVersion
from services.enrollment.exclusions_ports import ExclusionStore
from services.enrollment.exits import Exited
from services.enrollment.lifecycle_ports import LifecycleStore
from services.enrollment.rules_ports import RulesStore
from shared.contracts import RecordRef
from shared.contracts.commands import Enroll

WorkflowKey = tuple[str, str]
"""(account id, workflow id)"""

VersionKey = tuple[str, str, int]
"""(account id, workflow id, version)"""

RecordKey = tuple[str, RecordRef]
"""(account id, record)"""

WorkflowRecordKey = tuple[str, str, RecordRef]
"""(account id, workflow id, record)"""

EnrollmentKey = tuple[str, uuid.UUID]
"""(account id, enrollment id): enrollment ids are only ever compared within an account."""

WorkflowHead = tuple[int, str]
"""(current version, its definition hash)"""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of an enrollment's history (never deleted): a transition or a rejection."""

    account_id: str
    workflow_id: str
    record: RecordRef
    event_type: str
    detail: dict[str, Any]
    enrollment_id: uuid.UUID | None
    caused_by: uuid.UUID | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ParkedEnroll:
    """An ``enrollment.enroll`` waiting for its workflow's first version, since when; or,
    with ``release_at``, for the day its workflow's daily cap admits it (``caps``)."""

    command: Enroll
    parked_at: datetime
    release_at: datetime | None = None

    @property
    def workflow(self) -> WorkflowKey:
        return (self.command.account_id, self.command.payload.workflow_id)


class EnrollmentStore(ExclusionStore, LifecycleStore, RulesStore, Protocol):
    """Each method takes many rows and costs one statement however many there are
    (``current_workflows`` two at most), so a run of messages costs a fixed number."""

    async def workflow_heads(self, keys: Sequence[WorkflowKey]) -> dict[WorkflowKey, WorkflowHead]:
        """The current version of each workflow that exists, locked until commit."""
        ...

    async def add_workflow_versions(self, applied: Sequence[VersionApplied]) -> None:
        """Add each version and make it its workflow's current one (the last one wins)."""
        ...

    async def current_workflows(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowVersion]:
        """The current version of each workflow that exists."""
        ...

    async def workflow_versions(
        self, keys: Sequence[VersionKey]
    ) -> dict[VersionKey, WorkflowVersion]:
        """Those of the versions that exist."""
        ...

    async def enrollments_in_workflows_for_update(
        self, keys: Sequence[WorkflowRecordKey]
    ) -> list[Enrollment]:
        """Every enrollment, any status, of each (account, workflow, record), locked, oldest
        first."""
        ...

    async def live_enrollments_for_update(self, records: Sequence[RecordKey]) -> list[Enrollment]:
        """The active or paused enrollments of each (account, record), locked, oldest first."""
        ...

    async def enrollments_for_update(self, keys: Sequence[EnrollmentKey]) -> list[Enrollment]:
        """Those of the enrollments that exist, locked."""
        ...

    async def insert_enrollments(self, admitted: Sequence[Admitted]) -> None:
        """Save new enrollments, with the contact and actor they were enrolled with."""
        ...

    async def save_progress(self, enrollments: Sequence[Enrollment]) -> None:
        """Save status, step, due and end times, the pause (its end and id), the dispatch
        grant and the pending exit of known enrollments; the last state wins."""
        ...

    async def save_exits(self, exits: Sequence[Exited]) -> None:
        """Save exits with their reason, source, actor, trigger and steps completed; the
        grant and pending exit are over. The last one wins."""
        ...

    async def lapsed_exits_for_update(
        self, *, lapsed_before: datetime, limit: int
    ) -> list[Enrollment]:
        """Up to ``limit`` exiting enrollments whose grant's lease ended before
        ``lapsed_before``, locked, oldest lease first; replicas skip each other's rows."""
        ...

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Append to the history, in order."""
        ...

    async def lock_workflows(self, keys: Sequence[WorkflowKey]) -> None:
        """Hold a lock per workflow until commit, taken by whatever parks enrolls for it
        and whatever applies it: a statement after the lock sees an apply or a park that
        committed while it was waited for, so no enroll is parked past its workflow."""
        ...

    async def park_enrolls(self, parked: Sequence[ParkedEnroll]) -> None:
        """Keep enrolls whose workflow does not exist yet; one already parked (the same
        account and message id) is left as it is."""
        ...

    async def take_parked(self, keys: Sequence[WorkflowKey]) -> list[Enroll]:
        """Remove and return the enrolls parked for each workflow (not those waiting for the
        cap), in arrival order."""
        ...

    async def take_expired_parked(self, *, parked_before: datetime, limit: int) -> list[Enroll]:
        """Remove and return up to ``limit`` enrolls parked before ``parked_before`` (not
        those waiting for the cap), in arrival order; replicas skip each other's rows."""
        ...
