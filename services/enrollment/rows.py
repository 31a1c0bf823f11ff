"""How an enrollment row maps to ``domain.Enrollment`` (``repository`` holds the SQL)."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from services.enrollment.domain import Dispatch, Enrollment, PendingExit, Status
from shared.contracts import Actor, RecordRef, RecordType
from shared.contracts.commands import ExitReason, ExitSource, TriggeringEvent
from shared.contracts.events import ExclusionHit

ENROLLMENT_COLUMNS = """e.enrollment_id, e.account_id, e.workflow_id, e.workflow_version,
    e.record_type, e.record_id, e.status, e.current_step, e.steps_completed, e.enrolled_at,
    e.next_due_at, e.ended_at, e.exit_reason, e.paused_until, e.pause_id, e.dispatch_id,
    e.dispatch_step, e.dispatch_step_id, e.dispatch_lease_until, e.pending_exit, e.time_zone"""


def enrollment_of(row: asyncpg.Record) -> Enrollment:
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
        paused_until=row["paused_until"],
        pause_id=row["pause_id"],
        dispatch=_dispatch(row),
        pending_exit=_pending_exit(row["pending_exit"]),
        time_zone=row["time_zone"],
    )


def _dispatch(row: asyncpg.Record) -> Dispatch | None:
    if row["dispatch_id"] is None:
        return None
    return Dispatch(
        row["dispatch_id"],
        row["dispatch_step"],
        row["dispatch_step_id"],
        row["dispatch_lease_until"],
    )


def _pending_exit(stored: str | None) -> PendingExit | None:
    if stored is None:
        return None
    fields = json.loads(stored)
    trigger = fields["triggering_event"]
    return PendingExit(
        reason=ExitReason(fields["reason"]),
        source=ExitSource(fields["source"]),
        actor=Actor.model_validate(fields["actor"]),
        triggering_event=TriggeringEvent.model_validate(trigger) if trigger else None,
        decided_at=datetime.fromisoformat(fields["decided_at"]),
        exclusion=ExclusionHit.model_validate(hit) if (hit := fields.get("exclusion")) else None,
    )


def pending_exit_json(pending: PendingExit | None) -> str | None:
    if pending is None:
        return None
    trigger = pending.triggering_event
    return json.dumps(
        {
            "reason": pending.reason.value,
            "source": pending.source.value,
            "actor": pending.actor.model_dump(mode="json"),
            "triggering_event": trigger.model_dump(mode="json") if trigger else None,
            "decided_at": pending.decided_at.isoformat(),
            "exclusion": pending.exclusion.model_dump(mode="json") if pending.exclusion else None,
        }
    )
