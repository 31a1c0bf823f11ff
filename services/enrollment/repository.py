"""All of the enrollment service's SQL."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.enrollment.domain import Enrollment, Status, WorkflowVersion
from shared.contracts import Actor, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource, TriggeringEvent
from shared.contracts.workflow import WorkflowDefinition
from shared.db import DbConnection

_ENROLLMENT_COLUMNS = """enrollment_id, account_id, workflow_id, workflow_version, record_type,
    record_id, status, current_step, steps_completed, enrolled_at, next_due_at, ended_at,
    exit_reason"""

# Workflow versions never change once written, so a process may keep them.
_VERSION_CACHE: dict[tuple[str, str, int], WorkflowVersion] = {}
_VERSION_CACHE_LIMIT = 10_000


def _enrollment(row: asyncpg.Record) -> Enrollment:
    return Enrollment(
        enrollment_id=row["enrollment_id"],
        account_id=row["account_id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
        status=Status(row["status"]),
        current_step=row["current_step"],
        steps_completed=row["steps_completed"],
        enrolled_at=row["enrolled_at"],
        next_due_at=row["next_due_at"],
        ended_at=row["ended_at"],
        exit_reason=ExitReason(row["exit_reason"]) if row["exit_reason"] else None,
    )


class EnrollmentRepository:
    def __init__(self, conn: DbConnection) -> None:
        self._conn = conn

    async def workflow_head(self, account_id: str, workflow_id: str) -> tuple[int, str] | None:
        row = await self._conn.fetchrow(
            """SELECT w.current_version, v.definition_hash FROM workflows w
               JOIN workflow_versions v USING (account_id, workflow_id)
               WHERE w.account_id = $1 AND w.workflow_id = $2 AND v.version = w.current_version
               FOR UPDATE OF w""",
            account_id,
            workflow_id,
        )
        return None if row is None else (row["current_version"], row["definition_hash"])

    async def add_workflow_version(
        self,
        account_id: str,
        definition: WorkflowDefinition,
        *,
        version: int,
        definition_hash: str,
        actor: Actor,
    ) -> None:
        await self._conn.execute(
            """INSERT INTO workflow_versions
                   (account_id, workflow_id, version, definition, definition_hash, applied_by)
               VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb)""",
            account_id,
            definition.workflow_id,
            version,
            definition.model_dump_json(),
            definition_hash,
            actor.model_dump_json(),
        )
        await self._conn.execute(
            """INSERT INTO workflows (account_id, workflow_id, current_version, record_type, name)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (account_id, workflow_id) DO UPDATE
                   SET current_version = EXCLUDED.current_version, name = EXCLUDED.name,
                       record_type = EXCLUDED.record_type, updated_at = now()""",
            account_id,
            definition.workflow_id,
            version,
            definition.record_type.value,
            definition.name,
        )

    async def current_workflow(self, account_id: str, workflow_id: str) -> WorkflowVersion | None:
        version = await self._conn.fetchval(
            "SELECT current_version FROM workflows WHERE account_id = $1 AND workflow_id = $2",
            account_id,
            workflow_id,
        )
        if version is None:
            return None
        return await self.workflow_version(account_id, workflow_id, version)

    async def workflow_version(
        self, account_id: str, workflow_id: str, version: int
    ) -> WorkflowVersion | None:
        key = (account_id, workflow_id, version)
        if (cached := _VERSION_CACHE.get(key)) is not None:
            return cached
        definition = await self._conn.fetchval(
            """SELECT definition FROM workflow_versions
               WHERE account_id = $1 AND workflow_id = $2 AND version = $3""",
            account_id,
            workflow_id,
            version,
        )
        if definition is None:
            return None
        found = WorkflowVersion(
            account_id, workflow_id, version, WorkflowDefinition.model_validate_json(definition)
        )
        if len(_VERSION_CACHE) >= _VERSION_CACHE_LIMIT:
            _VERSION_CACHE.clear()
        _VERSION_CACHE[key] = found
        return found

    async def record_enrollments_for_update(
        self, account_id: str, workflow_id: str, record: RecordRef
    ) -> list[Enrollment]:
        rows = await self._conn.fetch(
            f"""SELECT {_ENROLLMENT_COLUMNS} FROM enrollments
                WHERE account_id = $1 AND workflow_id = $2 AND record_type = $3 AND record_id = $4
                ORDER BY enrolled_at FOR UPDATE""",
            account_id,
            workflow_id,
            record.type.value,
            record.id,
        )
        return [_enrollment(row) for row in rows]

    async def live_enrollments_for_update(
        self,
        account_id: str,
        record: RecordRef,
        *,
        workflow_id: str | None,
        enrollment_id: uuid.UUID | None,
    ) -> list[Enrollment]:
        """The record's live enrollments, narrowed to one workflow or enrollment if given."""
        rows = await self._conn.fetch(
            f"""SELECT {_ENROLLMENT_COLUMNS} FROM enrollments
                WHERE account_id = $1 AND record_type = $2 AND record_id = $3
                  AND status IN ('active', 'paused')
                  AND ($4::text IS NULL OR workflow_id = $4)
                  AND ($5::uuid IS NULL OR enrollment_id = $5)
                ORDER BY enrolled_at FOR UPDATE""",
            account_id,
            record.type.value,
            record.id,
            workflow_id,
            enrollment_id,
        )
        return [_enrollment(row) for row in rows]

    async def enrollment_for_update(
        self, account_id: str, enrollment_id: uuid.UUID
    ) -> Enrollment | None:
        row = await self._conn.fetchrow(
            f"""SELECT {_ENROLLMENT_COLUMNS} FROM enrollments
                WHERE account_id = $1 AND enrollment_id = $2 FOR UPDATE""",
            account_id,
            enrollment_id,
        )
        return None if row is None else _enrollment(row)

    async def insert_enrollment(
        self, enrollment: Enrollment, *, contact: ContactDetails | None, actor: Actor
    ) -> None:
        await self._conn.execute(
            """INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                   record_type, record_id, contact, status, current_step, steps_completed,
                   next_due_at, enrolled_by, enrolled_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12::jsonb, $13)""",
            enrollment.enrollment_id,
            enrollment.account_id,
            enrollment.workflow_id,
            enrollment.workflow_version,
            enrollment.record.type.value,
            enrollment.record.id,
            contact.model_dump_json() if contact else None,
            enrollment.status.value,
            enrollment.current_step,
            enrollment.steps_completed,
            enrollment.next_due_at,
            actor.model_dump_json(),
            enrollment.enrolled_at,
        )

    async def save_progress(self, enrollment: Enrollment) -> None:
        await self._conn.execute(
            """UPDATE enrollments SET status = $2, current_step = $3, steps_completed = $4,
                   next_due_at = $5, ended_at = $6, updated_at = now()
               WHERE enrollment_id = $1""",
            enrollment.enrollment_id,
            enrollment.status.value,
            enrollment.current_step,
            enrollment.steps_completed,
            enrollment.next_due_at,
            enrollment.ended_at,
        )

    async def save_exit(
        self,
        enrollment: Enrollment,
        *,
        source: ExitSource,
        actor: Actor,
        triggering_event: TriggeringEvent | None,
    ) -> None:
        await self._conn.execute(
            """UPDATE enrollments SET status = 'exited', next_due_at = NULL, ended_at = $2,
                   exit_reason = $3, exit_source = $4, exit_actor = $5::jsonb,
                   triggering_event = $6::jsonb, updated_at = now()
               WHERE enrollment_id = $1""",
            enrollment.enrollment_id,
            enrollment.ended_at,
            enrollment.exit_reason.value if enrollment.exit_reason else None,
            source.value,
            actor.model_dump_json(),
            triggering_event.model_dump_json() if triggering_event else None,
        )

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
    ) -> None:
        await self._conn.execute(
            """INSERT INTO enrollment_history (account_id, enrollment_id, workflow_id, record_type,
                   record_id, event_type, detail, caused_by, at)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)""",
            account_id,
            enrollment_id,
            workflow_id,
            record.type.value,
            record.id,
            event_type,
            json.dumps(detail, default=str),
            caused_by,
            at,
        )
