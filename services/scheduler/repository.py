"""All of the scheduler's SQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.contracts.events import StepScheduledPayload
from shared.db import DbConnection


async def is_ended(conn: DbConnection, enrollment_id: uuid.UUID) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM ended_enrollments WHERE enrollment_id = $1", enrollment_id
    )
    return found is not None


async def upsert_timer(conn: DbConnection, account_id: str, step: StepScheduledPayload) -> None:
    """Hold a timer. A step scheduled again (resumed after a pause) re-arms its timer,
    whether the pause cancelled it or it fired and the send was then cancelled."""
    await conn.execute(
        """INSERT INTO timers (enrollment_id, step_index, account_id, workflow_id,
                               workflow_version, record_type, record_id, step_id, channel, due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (enrollment_id, step_index) DO UPDATE
               SET due_at = EXCLUDED.due_at, state = 'pending', cancelled_reason = NULL
               WHERE timers.state = 'cancelled'
                  OR (timers.state = 'fired' AND timers.due_at <> EXCLUDED.due_at)""",
        step.enrollment_id,
        step.step_index,
        account_id,
        step.workflow_id,
        step.workflow_version,
        step.record.type.value,
        step.record.id,
        step.step_id,
        step.channel.value,
        step.due_at,
    )


async def cancel_pending(conn: DbConnection, enrollment_id: uuid.UUID, reason: str) -> int:
    result = await conn.execute(
        """UPDATE timers SET state = 'cancelled', cancelled_reason = $2
           WHERE enrollment_id = $1 AND state = 'pending'""",
        enrollment_id,
        reason,
    )
    return int(result.split()[-1])


async def mark_ended(conn: DbConnection, enrollment_id: uuid.UUID, outcome: str) -> None:
    await conn.execute(
        """INSERT INTO ended_enrollments (enrollment_id, outcome) VALUES ($1, $2)
           ON CONFLICT DO NOTHING""",
        enrollment_id,
        outcome,
    )


async def fire_due(conn: DbConnection, *, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Mark up to ``limit`` due timers fired; replicas skip each other's locked rows."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT enrollment_id, step_index FROM timers
               WHERE state = 'pending' AND due_at <= $1
               ORDER BY due_at
               LIMIT $2
               FOR UPDATE SKIP LOCKED)
           UPDATE timers t SET state = 'fired', fired_at = $1
           FROM due
           WHERE t.enrollment_id = due.enrollment_id AND t.step_index = due.step_index
           RETURNING t.enrollment_id, t.step_index, t.account_id, t.workflow_id,
                     t.workflow_version, t.record_type, t.record_id, t.step_id, t.channel,
                     t.due_at""",
        now,
        limit,
    )
    return [dict(row) for row in rows]
