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

from services.enrollment.domain import (
    Admitted,
    Enrollment,
    Exited,
    VersionApplied,
    WorkflowVersion,
)
from shared.contracts import RecordRef

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


class EnrollmentStore(Protocol):
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
        """Save status, step, due and end times and the pause (its end and id) of known
        enrollments; the last state wins."""
        ...

    async def save_exits(self, exits: Sequence[Exited]) -> None:
        """Save exits with their reason, source, actor and trigger; the last one wins."""
        ...

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Append to the history, in order."""
        ...
