"""What the handlers need from storage; ``repository.EnrollmentRepository`` is the real one,
tests use an in-memory fake. Every method that takes a list does its work in one round
trip, so a batch of messages costs a constant number of them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.enrollment.domain import Enrollment, WorkflowVersion
from shared.contracts import Actor, RecordRef
from shared.contracts.commands import ContactDetails, ExitSource, TriggeringEvent
from shared.contracts.workflow import WorkflowDefinition

WorkflowKey = tuple[str, str]
"""(account id, workflow id)"""

VersionKey = tuple[str, str, int]
"""(account id, workflow id, version)"""

RecordKey = tuple[str, RecordRef]
"""(account id, record)"""


@dataclass(frozen=True, slots=True)
class NewEnrollment:
    enrollment: Enrollment
    contact: ContactDetails | None
    actor: Actor


@dataclass(frozen=True, slots=True)
class ExitRecord:
    enrollment: Enrollment
    source: ExitSource
    actor: Actor
    triggering_event: TriggeringEvent | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    account_id: str
    workflow_id: str
    record: RecordRef
    event_type: str
    detail: dict[str, Any]
    enrollment_id: uuid.UUID | None
    caused_by: uuid.UUID | None
    at: datetime


class EnrollmentStore(Protocol):
    async def workflow_head(self, account_id: str, workflow_id: str) -> tuple[int, str] | None: ...

    async def add_workflow_version(
        self,
        account_id: str,
        definition: WorkflowDefinition,
        *,
        version: int,
        definition_hash: str,
        actor: Actor,
    ) -> None: ...

    async def current_workflows(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowVersion]: ...

    async def workflow_versions(
        self, keys: Sequence[VersionKey]
    ) -> dict[VersionKey, WorkflowVersion]: ...

    async def enrollments_in_workflows_for_update(
        self, keys: Sequence[tuple[str, str, RecordRef]]
    ) -> list[Enrollment]:
        """Every enrollment, any status, of each (account, workflow, record)."""
        ...

    async def live_enrollments_for_update(self, records: Sequence[RecordKey]) -> list[Enrollment]:
        """The active or paused enrollments of each (account, record)."""
        ...

    async def enrollments_for_update(
        self, keys: Sequence[tuple[str, uuid.UUID]]
    ) -> list[Enrollment]: ...

    async def insert_enrollments(self, new: Sequence[NewEnrollment]) -> None: ...

    async def save_progress(self, enrollments: Sequence[Enrollment]) -> None: ...

    async def save_exits(self, exits: Sequence[ExitRecord]) -> None: ...

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None: ...


StoreFactory = Callable[[Any], EnrollmentStore]
"""Builds a store over the unit of work's connection."""
