"""Migration decisions -> outgoing messages: the preview or report of a
``workflow.migrate`` and the events of each enrollment it moved."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from services.enrollment import domain, messages
from services.enrollment.migration import Moved, Skipped
from services.enrollment.ports import HistoryEntry
from shared.contracts import Message
from shared.contracts.migration import (
    EnrollmentMigrated,
    EnrollmentMigratedPayload,
    MigrateWorkflow,
    MigrationCandidate,
    MigrationOutcome,
    MigrationReportPayload,
    WorkflowMigrated,
    WorkflowMigrationPreviewed,
)


def candidate(decision: Moved | Skipped) -> MigrationCandidate:
    if isinstance(decision, Skipped):
        e = decision.enrollment
        return MigrationCandidate(
            enrollment_id=e.enrollment_id,
            record=e.record,
            from_step=e.current_step,
            outcome=MigrationOutcome.SKIPPED,
            reason=decision.reason,
        )
    old, new = decision.moved_from, decision.enrollment
    return MigrationCandidate(
        enrollment_id=old.enrollment_id,
        record=old.record,
        from_step=old.current_step,
        outcome=MigrationOutcome.MOVES,
        to_step=new.current_step,
        due_at=new.next_due_at,
    )


def report(
    command: MigrateWorkflow, decided: Sequence[Moved | Skipped], *, more: bool
) -> WorkflowMigrationPreviewed | WorkflowMigrated:
    p = command.payload
    candidates = tuple(candidate(d) for d in decided)
    moves = sum(c.outcome is MigrationOutcome.MOVES for c in candidates)
    payload = MigrationReportPayload(
        workflow_id=p.workflow_id,
        from_version=p.from_version,
        to_version=p.to_version,
        moves=moves,
        skipped=len(candidates) - moves,
        more=more,
        candidates=candidates,
    )
    model = WorkflowMigrationPreviewed if p.dry_run else WorkflowMigrated
    return model.create(
        message_id=domain.event_id(
            "migration", command.account_id, command.message_id, p.workflow_id
        ),
        account_id=command.account_id,
        caused_by=command,
        payload=payload,
    )


def moved(decision: Moved, command: MigrateWorkflow) -> list[Message]:
    """``enrollment.migrated``, then ``enrollment.step_scheduled`` when its step is armed."""
    old, new = decision.moved_from, decision.enrollment
    payload = EnrollmentMigratedPayload(
        enrollment_id=new.enrollment_id,
        workflow_id=new.workflow_id,
        workflow_version=new.workflow_version,
        record=new.record,
        from_version=old.workflow_version,
        from_step=old.current_step,
        step_index=new.current_step,
        due_at=new.next_due_at,
        actor=command.payload.actor,
    )
    out: list[Message] = [
        EnrollmentMigrated.create(
            message_id=domain.event_id(
                "enrollment_migrated", command.account_id, command.message_id, new.enrollment_id
            ),
            account_id=command.account_id,
            caused_by=command,
            payload=payload,
        )
    ]
    if decision.scheduled is not None:
        out.append(messages.step_scheduled(new, decision.scheduled, command))
    return out


def history(decision: Moved, caused_by: uuid.UUID, at: datetime) -> HistoryEntry:
    """The enrollment's history row of its move."""
    old, new = decision.moved_from, decision.enrollment
    return HistoryEntry(
        account_id=new.account_id,
        workflow_id=new.workflow_id,
        record=new.record,
        event_type=EnrollmentMigrated.TYPE,
        detail={
            "step": new.current_step,
            "status": new.status.value,
            "from_version": old.workflow_version,
            "to_version": new.workflow_version,
            "from_step": old.current_step,
        },
        enrollment_id=new.enrollment_id,
        caused_by=caused_by,
        at=at,
    )
