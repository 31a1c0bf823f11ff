"""Enrollment subscribers of the workflow lifecycle commands: pause, resume, delete,
reorder, and the bulk exit of many records from one workflow. Each is answered: by what
changed, or by ``command.refused`` with the reason (see ``answers``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from services.enrollment import answers, domain, exits, lifecycle
from services.enrollment.ports import EnrollmentStore, WorkflowKey, WorkflowRecordKey
from services.enrollment.recording import record, save_changes, version_key
from shared.contracts.commands import (
    BulkExit,
    DeleteWorkflow,
    ExitSource,
    PauseWorkflow,
    ReorderWorkflows,
    ResumeWorkflow,
)
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]
WorkflowCommand = PauseWorkflow | ResumeWorkflow | DeleteWorkflow

_WANTED = {
    PauseWorkflow.TYPE: WorkflowStatus.PAUSED,
    ResumeWorkflow.TYPE: WorkflowStatus.RUNNING,
    DeleteWorkflow.TYPE: WorkflowStatus.DELETED,
}


async def change_status(uow: Uow, commands: list[WorkflowCommand], now: datetime) -> None:
    """Pause, resume or delete each workflow. A pause or delete starts its sweep: the
    workflow's live enrollments exit in chunks (``sweeps``), each exit caused by it."""
    states = await uow.store.workflow_states_for_update(
        [(c.account_id, c.payload.workflow_id) for c in commands]
    )
    decided: list[tuple[lifecycle.StatusChanged | answers.Answer, WorkflowCommand]] = []
    for command in commands:
        key = (command.account_id, command.payload.workflow_id)
        decision = lifecycle.decide_status(
            states.get(key),
            _WANTED[command.type],
            workflow_id=command.payload.workflow_id,
            actor=command.payload.actor,
            sweep_id=domain.event_id("sweep", command.account_id, command.message_id, key[1]),
            now=now,
        )
        if isinstance(decision, domain.Unchanged):
            log.info("workflow_status_unchanged", workflow_id=key[1], why=decision.why)
            answer = answers.refused(command, decision.code, decision.why, workflow_id=key[1])
            decided.append((answer, command))
            continue
        states[key] = decision.state
        decided.append((decision, command))
        log.info("workflow_status_changed", workflow_id=key[1], status=decision.state.status)
    changed = [(d, c) for d, c in decided if isinstance(d, lifecycle.StatusChanged)]
    await uow.store.set_workflow_statuses([d.state for d, _ in changed])
    await uow.store.start_sweeps([(d.sweep, c) for d, c in changed if d.sweep is not None])
    await record(uow, decided, now)


async def reorder(uow: Uow, commands: list[ReorderWorkflows], now: datetime) -> None:
    """Put the account's workflow list in the order each command gives."""
    orders: dict[str, list[str]] = {}
    decided: list[tuple[lifecycle.Reordered | answers.Answer, ReorderWorkflows]] = []
    for command in commands:
        account = command.account_id
        if account not in orders:
            orders[account] = await uow.store.workflow_order_for_update(account)
        decision = lifecycle.decide_reorder(
            orders[account],
            command.payload.workflow_ids,
            account_id=account,
            actor=command.payload.actor,
        )
        if isinstance(decision, domain.Unchanged):
            decided.append((answers.refused(command, decision.code, decision.why), command))
            continue
        orders[account] = list(decision.workflow_ids)
        decided.append((decision, command))
    for account, order in orders.items():
        if any(isinstance(d, lifecycle.Reordered) and d.account_id == account for d, _ in decided):
            await uow.store.set_workflow_order(account, order)
    await record(uow, decided, now)


async def bulk_exit(uow: Uow, commands: list[BulkExit], now: datetime) -> None:
    """Take many selected records out of one workflow, answered per record: its exit (or
    revoked grant, when a send is out) or why it stayed as it was."""
    keys: list[WorkflowRecordKey] = [
        (c.account_id, c.payload.workflow_id, r) for c in commands for r in c.payload.records
    ]
    found: dict[WorkflowRecordKey, list[domain.Enrollment]] = defaultdict(list)
    for enrollment in await uow.store.enrollments_in_workflows_for_update(keys):
        found[(enrollment.account_id, enrollment.workflow_id, enrollment.record)].append(enrollment)
    workflows: list[WorkflowKey] = [(c.account_id, c.payload.workflow_id) for c in commands]
    current = await uow.store.current_workflows(workflows)
    versions = await uow.store.workflow_versions(
        [version_key(e) for es in found.values() for e in es if e.status.live]
    )
    decided: list[tuple[exits.Exited | exits.ExitPending | answers.Answer, BulkExit]] = []
    for command in commands:
        payload = command.payload
        if (command.account_id, payload.workflow_id) not in current:
            why = f"no workflow {payload.workflow_id!r} in this account"
            answer = answers.refused(
                command, "unknown_workflow", why, workflow_id=payload.workflow_id
            )
            decided.append((answer, command))
            continue
        for record_ref in dict.fromkeys(payload.records):
            history = found[(command.account_id, payload.workflow_id, record_ref)]
            live = [e for e in history if e.status.live]
            if not live:
                latest = max(history, key=lambda e: (e.enrolled_at, e.enrollment_id), default=None)
                answer = answers.no_live_enrollment(
                    command, record_ref, payload.workflow_id, latest
                )
                decided.append((answer, command))
                continue
            enrollment = live[0]
            workflow = versions.get(version_key(enrollment))
            decision = exits.decide_exit(
                enrollment,
                reason=payload.reason,
                source=ExitSource.BULK,
                actor=payload.actor,
                triggering_event=None,
                agents_may_stop=workflow.definition.settings.agents_may_stop if workflow else True,
                now=now,
            )
            if isinstance(decision, domain.Unchanged):
                decided.append((answers.unchanged(command, enrollment, decision), command))
                continue
            history[history.index(enrollment)] = decision.enrollment
            decided.append((decision, command))
    await save_changes(
        uow.store, [d for d, _ in decided if isinstance(d, exits.Exited | exits.ExitPending)]
    )
    await record(uow, decided, now)
