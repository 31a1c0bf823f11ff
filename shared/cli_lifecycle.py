"""The operator CLI's workflow lifecycle and recovery commands (issue 9): pause, resume,
delete and reorder workflows, restore one exit or preview and restore many. Each builds
the command and ``offramp`` publishes it; its answers are on the enrollment and workflow
topics (``offramp tail``), caused by it."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import datetime

from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType
from shared.contracts.commands import (
    BulkRestore,
    BulkRestorePayload,
    DeleteWorkflow,
    ExitReason,
    PauseWorkflow,
    ReorderWorkflows,
    ReorderWorkflowsPayload,
    Restore,
    RestorePayload,
    ResumeWorkflow,
    WorkflowCommandPayload,
)


def _actor(args: argparse.Namespace) -> Actor:
    if args.user:
        return Actor(kind=ActorKind.USER, id=args.user)
    return Actor(kind=ActorKind.API, id="cli")


def _workflow_command(
    kind: type[PauseWorkflow] | type[ResumeWorkflow] | type[DeleteWorkflow],
) -> Callable[[argparse.Namespace], list[Message]]:
    def build(args: argparse.Namespace) -> list[Message]:
        payload = WorkflowCommandPayload(workflow_id=args.workflow, actor=_actor(args))
        return [kind.create(account_id=args.account, payload=payload)]

    return build


def cmd_reorder(args: argparse.Namespace) -> list[Message]:
    payload = ReorderWorkflowsPayload(workflow_ids=tuple(args.workflows), actor=_actor(args))
    return [ReorderWorkflows.create(account_id=args.account, payload=payload)]


def cmd_restore(args: argparse.Namespace) -> list[Message]:
    payload = RestorePayload(
        record=RecordRef(type=RecordType(args.record_type), id=args.record_id),
        enrollment_id=uuid.UUID(args.enrollment),
        actor=_actor(args),
    )
    return [Restore.create(account_id=args.account, payload=payload)]


def cmd_bulk_restore(args: argparse.Namespace) -> list[Message]:
    payload = BulkRestorePayload(
        workflow_id=args.workflow,
        reason=ExitReason(args.reason) if args.reason else None,
        exited_from=datetime.fromisoformat(args.since) if args.since else None,
        exited_until=datetime.fromisoformat(args.until) if args.until else None,
        rule_id=args.rule,
        rule_version=args.rule_version,
        dry_run=not args.apply,
        actor=_actor(args),
    )
    return [BulkRestore.create(account_id=args.account, payload=payload)]


LIFECYCLE_BUILDERS: dict[str, Callable[[argparse.Namespace], list[Message]]] = {
    "workflow-pause": _workflow_command(PauseWorkflow),
    "workflow-resume": _workflow_command(ResumeWorkflow),
    "workflow-delete": _workflow_command(DeleteWorkflow),
    "workflow-reorder": cmd_reorder,
    "restore": cmd_restore,
    "bulk-restore": cmd_bulk_restore,
}


def lifecycle_parsers(
    command: Callable[[str, str], argparse.ArgumentParser],
    account: Callable[[argparse.ArgumentParser], None],
) -> None:
    for name, text in (
        ("workflow-pause", "pause a workflow: every live enrollment exits (workflow_paused)"),
        ("workflow-resume", "let a paused workflow enroll again (nobody comes back)"),
        ("workflow-delete", "delete a workflow, no undo: every live enrollment exits"),
    ):
        p = command(name, text)
        account(p)
        p.add_argument("--workflow", required=True)
    p = command("workflow-reorder", "put these workflows first in the account's list")
    account(p)
    p.add_argument("workflows", nargs="+")
    p = command("restore", "restore one exited enrollment at the step after its last one")
    account(p)
    p.add_argument("--record-type", default="contact", choices=[t.value for t in RecordType])
    p.add_argument("--record-id", required=True)
    p.add_argument("--enrollment", required=True, help="the exited enrollment's id")
    p = command("bulk-restore", "preview (default) or restore a workflow's exits")
    account(p)
    p.add_argument("--workflow", required=True)
    p.add_argument("--reason", choices=[r.value for r in ExitReason])
    p.add_argument("--since", help="exits at or after this ISO time (with a zone)")
    p.add_argument("--until", help="exits before this ISO time (with a zone)")
    p.add_argument("--rule", help="exits by this exclusion rule")
    p.add_argument("--rule-version", type=int)
    p.add_argument("--apply", action="store_true", help="restore (default: a dry run)")
