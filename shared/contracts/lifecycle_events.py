"""Events of the workflow lifecycle and of recovery (issue 9): answers to commands that
changed nothing, workflow status, exits progress, activity, order and owner removal,
restores. Same topics as ``events``: workflow ones on ``offramp.workflow.events.v1``,
enrollment ones on ``offramp.enrollment.events.v1``."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.contracts.base import Actor, Contract, Identifier, Message, RecordRef
from shared.contracts.commands import ExitReason, OwnerRemovalPolicy
from shared.contracts.events import EnrollmentRef


class WorkflowStatus(StrEnum):
    """Whether a workflow takes new enrollments: ``running`` does, ``paused`` until it is
    resumed, ``deleted`` never again."""

    RUNNING = "running"
    PAUSED = "paused"
    DELETED = "deleted"


class WorkflowStatusChangedPayload(Contract):
    workflow_id: Identifier
    status: WorkflowStatus
    actor: Actor
    live_enrollments: int = Field(
        ge=0, description="Enrollments live when it paused or was deleted: all of them exit."
    )


class WorkflowStatusChanged(Message):
    """A workflow was paused, resumed or deleted (the answer to `workflow.pause`,
    `workflow.resume`, `workflow.delete`)."""

    type: Literal["workflow.status_changed"] = "workflow.status_changed"
    payload: WorkflowStatusChangedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class ExitsProgressPayload(Contract):
    workflow_id: Identifier
    reason: ExitReason
    exited: int = Field(ge=0, description="Enrollments exited so far.")
    waiting: int = Field(
        ge=0, description="Exits so far that wait for a granted send's outcome (they follow)."
    )
    done: bool = Field(description="True on the last chunk: no live enrollment is left.")


class WorkflowExitsProgress(Message):
    """Progress of a paused or deleted workflow's exits, one per chunk (causation: the
    `workflow.pause` or `workflow.delete`)."""

    type: Literal["workflow.exits_progress"] = "workflow.exits_progress"
    payload: ExitsProgressPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class ActivityChangedPayload(Contract):
    workflow_id: Identifier
    active: bool = Field(description="True while it has at least one live enrollment.")


class WorkflowActivityChanged(Message):
    """A workflow became active (its first live enrollment) or inactive (its last one
    ended)."""

    type: Literal["workflow.activity_changed"] = "workflow.activity_changed"
    payload: ActivityChangedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class ReorderedPayload(Contract):
    workflow_ids: tuple[Identifier, ...] = Field(
        max_length=10_000, description="Every workflow of the account, in its new order."
    )
    actor: Actor


class WorkflowsReordered(Message):
    """The account's workflow list has a new order (the answer to `workflow.reorder`)."""

    type: Literal["workflow.reordered"] = "workflow.reordered"
    payload: ReorderedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflows"


class RefusedPayload(Contract):
    command_type: str = Field(max_length=100)
    code: str = Field(
        max_length=100,
        description="Stable: `not_enrolled`, `already_exited`, `already_completed`, "
        "`exiting`, `agents_may_not_stop`, `already_paused`, `not_paused`, `stale_pause`, "
        "`unchanged`, `unknown_workflow`, `workflow_paused`, `workflow_deleted`, "
        "`already_restored`, `not_exited`, `already_enrolled`, `nothing_left`, "
        "`exclusion_blocks`, `in_another_workflow`, `in_another_exclusive_workflow`, "
        "`daily_cap_reached`, `nothing_to_restore`, `unknown_version`, `same_version`, "
        "`invalid_step_map`, `owns_no_workflow` (README: Commands and "
        "their answers).",
    )
    detail: str = Field(max_length=2000)
    workflow_id: Identifier | None = None
    record: RecordRef | None = None
    enrollment_id: uuid.UUID | None = None


class CommandRefused(Message):
    """A command, or one record of a bulk command, changed nothing: why. Its
    ``causation_id`` is the command's ``message_id``."""

    type: Literal["command.refused"] = "command.refused"
    payload: RefusedPayload

    def partition_key(self) -> str:
        if self.payload.record is not None:
            return self.payload.record.key(self.account_id)
        if self.payload.workflow_id is not None:
            return f"{self.account_id}/workflow/{self.payload.workflow_id}"
        return f"{self.account_id}/-"


class RestoredPayload(EnrollmentRef):
    restored_from: uuid.UUID = Field(description="The exited enrollment this one continues.")
    step_index: int = Field(ge=0, description="The step it runs next.")
    actor: Actor


class EnrollmentRestored(Message):
    """An exited enrollment was put back at the step after its last completed one, as a
    new enrollment (followed by its `enrollment.enrolled` and `enrollment.step_scheduled`)."""

    type: Literal["enrollment.restored"] = "enrollment.restored"
    payload: RestoredPayload


class RestoreCandidate(Contract):
    enrollment_id: uuid.UUID
    record: RecordRef
    exit_reason: ExitReason | None = None
    step_index: int = Field(ge=0)
    refused: str | None = Field(None, max_length=100, description="Why it would be refused.")


class RestorePreviewedPayload(Contract):
    workflow_id: Identifier
    would_restore: int = Field(ge=0)
    would_refuse: int = Field(ge=0)
    candidates: tuple[RestoreCandidate, ...] = Field(max_length=1000)


class RestorePreviewed(Message):
    """The dry run of `enrollment.bulk_restore`: what a restore would do to each exit."""

    type: Literal["enrollment.restore_previewed"] = "enrollment.restore_previewed"
    payload: RestorePreviewedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class OwnerRemovedPayload(Contract):
    workflow_id: Identifier
    user_id: Identifier = Field(description="The owner who was removed.")
    policy: OwnerRemovalPolicy
    reassigned_to_user_id: Identifier | None = Field(
        None, description="The new owner (policy `reassign`: a new version is applied)."
    )
    live_enrollments: int = Field(
        ge=0, description="Live enrollments that exit (policy `exit`), chunk by chunk."
    )


class WorkflowOwnerRemoved(Message):
    """A workflow's owner was removed: its enrollments exit (`workflow.exits_progress`
    follows) or it was reassigned. Caused by `workflow.remove_owner`."""

    type: Literal["workflow.owner_removed"] = "workflow.owner_removed"
    payload: OwnerRemovedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class OwnerRemovalSetPayload(Contract):
    policy: OwnerRemovalPolicy
    reassign_to_user_id: Identifier | None = None
    actor: Actor


class AccountOwnerRemovalSet(Message):
    """The account's owner-removal setting changed (answer to `account.set_owner_removal`)."""

    type: Literal["account.owner_removal_set"] = "account.owner_removal_set"
    payload: OwnerRemovalSetPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/account"


WORKFLOW_LIFECYCLE_MESSAGES: tuple[type[Message], ...] = (
    WorkflowStatusChanged,
    WorkflowExitsProgress,
    WorkflowActivityChanged,
    WorkflowsReordered,
    WorkflowOwnerRemoved,
    AccountOwnerRemovalSet,
)
ENROLLMENT_LIFECYCLE_MESSAGES: tuple[type[Message], ...] = (
    CommandRefused,
    EnrollmentRestored,
    RestorePreviewed,
)
