"""Builders of the workflow lifecycle and recovery commands (issue 9), and of one sweep
round and one activity round of the enrollment loop on the handler harness."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.enrollment.sweeps import activity_round, sweep_round
from shared.contracts import SYSTEM_ACTOR, Actor, RecordRef
from shared.contracts.commands import (
    BulkExit,
    BulkExitPayload,
    BulkRestore,
    BulkRestorePayload,
    DeleteWorkflow,
    ExitReason,
    OwnerRemovalPolicy,
    PauseWorkflow,
    RemoveOwner,
    RemoveOwnerPayload,
    ReorderWorkflows,
    ReorderWorkflowsPayload,
    Restore,
    RestorePayload,
    ResumeWorkflow,
    SetOwnerRemoval,
    SetOwnerRemovalPayload,
    WorkflowCommandPayload,
)
from shared.contracts.inbound import UserChange
from tests.support.builders.enrollment_commands import ALICE
from tests.support.builders.enrollment_events import ACCOUNT, USER
from tests.support.builders.enrollment_setup import EnrollmentHarness
from tests.support.harness import Outcome


def _of(workflow_id: str) -> WorkflowCommandPayload:
    return WorkflowCommandPayload(workflow_id=workflow_id, actor=USER)


def pause_wf_cmd(workflow_id: str = "onboarding", account_id: str = ACCOUNT) -> PauseWorkflow:
    return PauseWorkflow.create(account_id=account_id, payload=_of(workflow_id))


def resume_wf_cmd(workflow_id: str = "onboarding", account_id: str = ACCOUNT) -> ResumeWorkflow:
    return ResumeWorkflow.create(account_id=account_id, payload=_of(workflow_id))


def delete_wf_cmd(workflow_id: str = "onboarding", account_id: str = ACCOUNT) -> DeleteWorkflow:
    return DeleteWorkflow.create(account_id=account_id, payload=_of(workflow_id))


def reorder_cmd(*workflow_ids: str, account_id: str = ACCOUNT) -> ReorderWorkflows:
    payload = ReorderWorkflowsPayload(workflow_ids=workflow_ids, actor=USER)
    return ReorderWorkflows.create(account_id=account_id, payload=payload)


def bulk_exit_cmd(
    *records: RecordRef, workflow_id: str = "onboarding", actor: Actor = USER
) -> BulkExit:
    payload = BulkExitPayload(workflow_id=workflow_id, records=records, actor=actor)
    return BulkExit.create(account_id=ACCOUNT, payload=payload)


def restore_cmd(
    enrollment_id: uuid.UUID, record: RecordRef = ALICE, account_id: str = ACCOUNT
) -> Restore:
    payload = RestorePayload(record=record, enrollment_id=enrollment_id, actor=USER)
    return Restore.create(account_id=account_id, payload=payload)


def bulk_restore_cmd(
    workflow_id: str = "onboarding",
    *,
    dry_run: bool,
    reason: ExitReason | None = None,
    exited_from: datetime | None = None,
    exited_until: datetime | None = None,
    rule_id: str | None = None,
    rule_version: int | None = None,
) -> BulkRestore:
    payload = BulkRestorePayload(
        workflow_id=workflow_id,
        reason=reason,
        exited_from=exited_from,
        exited_until=exited_until,
        rule_id=rule_id,
        rule_version=rule_version,
        dry_run=dry_run,
        actor=USER,
    )
    return BulkRestore.create(account_id=ACCOUNT, payload=payload)


async def sweep(h: EnrollmentHarness, *, limit: int = 500) -> tuple[int | None, Outcome]:
    """One round of the sweep loop at the harness's clock."""
    return await h.step(lambda uow: sweep_round(uow, now=h.now, limit=limit))


async def sweep_all(h: EnrollmentHarness, *, limit: int = 500) -> list[Outcome]:
    """Sweep rounds until no sweep is left; what each published."""
    rounds: list[Outcome] = []
    while True:
        loaded, outcome = await sweep(h, limit=limit)
        if loaded is None:
            return rounds
        rounds.append(outcome)


async def activity(h: EnrollmentHarness) -> Outcome:
    """One activity round."""
    _, outcome = await h.step(activity_round)
    return outcome


def owner_policy_cmd(
    policy: OwnerRemovalPolicy, reassign_to: str | None = None, account_id: str = ACCOUNT
) -> SetOwnerRemoval:
    payload = SetOwnerRemovalPayload(policy=policy, reassign_to_user_id=reassign_to, actor=USER)
    return SetOwnerRemoval.create(account_id=account_id, payload=payload)


def remove_owner_cmd(user_id: str, account_id: str = ACCOUNT) -> RemoveOwner:
    payload = RemoveOwnerPayload(user_id=user_id, change=UserChange.DELETED, actor=SYSTEM_ACTOR)
    return RemoveOwner.create(account_id=account_id, payload=payload)
