"""Moving running enrollments to a new version of their workflow (``workflow.migrate``):
the command, its preview, its report and the event of each enrollment moved."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from shared.contracts.base import Actor, Contract, Identifier, Message, RecordRef
from shared.contracts.events import EnrollmentRef


class MigrateWorkflowPayload(Contract):
    workflow_id: Identifier
    from_version: int = Field(ge=1)
    to_version: int = Field(ge=1, description="An applied version of the workflow.")
    step_map: tuple[int | None, ...] = Field(
        max_length=1000,
        description="For each step of `from_version`, by index: its index in `to_version`, "
        "or null when it was removed (an enrollment at a removed step moves to the next "
        "mapped one, keeping its due time). Every old step is listed, the targets exist and "
        "keep the old order.",
    )
    dry_run: bool = Field(
        True,
        description="Only say what would happen to each enrollment "
        "(`workflow.migration_previewed`); true by default, so that a preview comes first.",
    )
    limit: int = Field(
        1000, ge=1, le=1000, description="At most this many enrollments per command; repeat."
    )
    actor: Actor


class MigrateWorkflow(Message):
    """Move the live enrollments of one version of a workflow to another. Answered by
    `workflow.migration_previewed` (dry run) or `workflow.migrated` (with
    `enrollment.migrated` and `enrollment.step_scheduled` per enrollment moved), or
    `command.refused` (`unknown_version`, `invalid_step_map`, `same_version`)."""

    type: Literal["workflow.migrate"] = "workflow.migrate"
    payload: MigrateWorkflowPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class MigrationOutcome(StrEnum):
    MOVES = "moves"
    """To `to_step`, due at `due_at` (its due time kept)."""
    SKIPPED = "skipped"
    """Left on its version, `reason` says why (migrate it later)."""


class MigrationCandidate(Contract):
    enrollment_id: uuid.UUID
    record: RecordRef
    from_step: int = Field(ge=0)
    outcome: MigrationOutcome
    to_step: int | None = Field(None, ge=0)
    due_at: AwareDatetime | None = None
    reason: str | None = Field(
        None,
        max_length=100,
        description="Why it is skipped: `granted` (a send is in flight), `exiting`, "
        "`no_step_left` (no mapped step at or after its current one).",
    )


class MigrationReportPayload(Contract):
    workflow_id: Identifier
    from_version: int = Field(ge=1)
    to_version: int = Field(ge=1)
    moves: int = Field(ge=0)
    skipped: int = Field(ge=0)
    more: bool = Field(description="More live enrollments of `from_version` than `limit`.")
    candidates: tuple[MigrationCandidate, ...] = Field(max_length=1000)


class WorkflowMigrationPreviewed(Message):
    """The dry run of `workflow.migrate`: what the migration would do to each enrollment."""

    type: Literal["workflow.migration_previewed"] = "workflow.migration_previewed"
    payload: MigrationReportPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class WorkflowMigrated(Message):
    """What `workflow.migrate` did to each enrollment (the same shape as its preview)."""

    type: Literal["workflow.migrated"] = "workflow.migrated"
    payload: MigrationReportPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class EnrollmentMigratedPayload(EnrollmentRef):
    from_version: int = Field(ge=1)
    from_step: int = Field(ge=0)
    step_index: int = Field(ge=0, description="Its current step in `workflow_version`.")
    due_at: AwareDatetime | None = None
    actor: Actor


class EnrollmentMigrated(Message):
    """An enrollment moved to another version of its workflow (`workflow.migrate`);
    `enrollment.step_scheduled` follows for its step (timers of the old step are ignored)."""

    type: Literal["enrollment.migrated"] = "enrollment.migrated"
    payload: EnrollmentMigratedPayload

    def partition_key(self) -> str:
        return self.payload.record.key(self.account_id)


MIGRATION_COMMANDS: tuple[type[Message], ...] = (MigrateWorkflow,)
MIGRATION_WORKFLOW_EVENTS: tuple[type[Message], ...] = (
    WorkflowMigrationPreviewed,
    WorkflowMigrated,
)
MIGRATION_ENROLLMENT_EVENTS: tuple[type[Message], ...] = (EnrollmentMigrated,)
