"""The operator CLI builds the lifecycle and recovery commands it publishes."""

from __future__ import annotations

import uuid

import pytest

from shared.cli import BUILDERS, _parser
from shared.contracts.commands import (
    BulkRestore,
    DeleteWorkflow,
    ExitReason,
    PauseWorkflow,
    ReorderWorkflows,
    Restore,
)

pytestmark = pytest.mark.unit


def built(*argv: str) -> object:
    args = _parser().parse_args(list(argv))
    (message,) = BUILDERS[args.command](args)
    return message


def test_workflow_commands_name_the_workflow_and_the_user() -> None:
    pause = built("workflow-pause", "--account", "acme", "--workflow", "wf-1", "--user", "u-1")
    delete = built("workflow-delete", "--account", "acme", "--workflow", "wf-1")

    assert isinstance(pause, PauseWorkflow)
    assert (pause.account_id, pause.payload.workflow_id, pause.payload.actor.id) == (
        "acme",
        "wf-1",
        "u-1",
    )
    assert isinstance(delete, DeleteWorkflow)


def test_reorder_and_restore_carry_what_was_given() -> None:
    enrollment = uuid.uuid4()
    reorder = built("workflow-reorder", "--account", "acme", "b", "a")
    restore = built(
        "restore", "--account", "acme", "--record-id", "c-1", "--enrollment", str(enrollment)
    )

    assert isinstance(reorder, ReorderWorkflows)
    assert reorder.payload.workflow_ids == ("b", "a")
    assert isinstance(restore, Restore)
    assert (restore.payload.enrollment_id, restore.payload.record.id) == (enrollment, "c-1")


def test_a_bulk_restore_is_a_dry_run_unless_applied() -> None:
    preview = built(
        "bulk-restore", "--account", "acme", "--workflow", "wf-1", "--reason", "replied"
    )
    applied = built(
        "bulk-restore",
        "--account",
        "acme",
        "--workflow",
        "wf-1",
        "--since",
        "2026-11-01T00:00:00+00:00",
        "--rule",
        "r-1",
        "--rule-version",
        "2",
        "--apply",
    )

    assert isinstance(preview, BulkRestore)
    assert (preview.payload.dry_run, preview.payload.reason) == (True, ExitReason.REPLIED)
    assert isinstance(applied, BulkRestore)
    assert applied.payload.dry_run is False
    assert (applied.payload.rule_id, applied.payload.rule_version) == ("r-1", 2)
    assert applied.payload.exited_from is not None
