"""What the handlers need from storage; ``repository.EnrollmentRepository`` is the real one,
tests use an in-memory fake."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from services.enrollment.domain import Enrollment, WorkflowVersion
from shared.contracts import Actor, RecordRef
from shared.contracts.commands import ContactDetails, ExitSource, TriggeringEvent
from shared.contracts.workflow import WorkflowDefinition


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

    async def current_workflow(
        self, account_id: str, workflow_id: str
    ) -> WorkflowVersion | None: ...

    async def workflow_version(
        self, account_id: str, workflow_id: str, version: int
    ) -> WorkflowVersion | None: ...

    async def record_enrollments_for_update(
        self, account_id: str, workflow_id: str, record: RecordRef
    ) -> list[Enrollment]: ...

    async def live_enrollments_for_update(
        self,
        account_id: str,
        record: RecordRef,
        *,
        workflow_id: str | None,
        enrollment_id: uuid.UUID | None,
    ) -> list[Enrollment]: ...

    async def enrollment_for_update(
        self, account_id: str, enrollment_id: uuid.UUID
    ) -> Enrollment | None: ...

    async def insert_enrollment(
        self, enrollment: Enrollment, *, contact: ContactDetails | None, actor: Actor
    ) -> None: ...

    async def save_progress(self, enrollment: Enrollment) -> None: ...

    async def save_exit(
        self,
        enrollment: Enrollment,
        *,
        source: ExitSource,
        actor: Actor,
        triggering_event: TriggeringEvent | None,
    ) -> None: ...

    async def add_history(
        self,
        *,
        account_id: str,
        workflow_id: str,
        record: RecordRef,
        event_type: str,
        detail: dict[str, Any],
        enrollment_id: uuid.UUID | None,
        caused_by: uuid.UUID | None,
        at: datetime,
    ) -> None: ...


StoreFactory = Callable[[Any], EnrollmentStore]
"""Builds a store over the unit of work's connection."""
