"""Commands: what UIs, the operator CLI and trigger-evaluator ask enrollment to do.

All go to the ``offramp.commands.v1`` topic. Enrollment is the only consumer; every
command is answered by an event on ``offramp.enrollment.events.v1`` or
``offramp.workflow.events.v1`` whose ``causation_id`` is the command's ``message_id``:
what changed, or ``command.refused`` with a stable code saying why nothing did (an
enroll refused is ``enrollment.rejected``; malformed input is a dead letter).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from shared.contracts.base import (
    Actor,
    Contract,
    EmailAddress,
    Identifier,
    Message,
    PhoneNumber,
    RecordRef,
    TimeZoneName,
)
from shared.contracts.inbound import UserChange
from shared.contracts.workflow import WorkflowDefinition


class ApplyWorkflowPayload(Contract):
    actor: Actor
    definition: WorkflowDefinition


class ApplyWorkflow(Message):
    """Create a workflow, or a new version of it when the definition changed."""

    type: Literal["workflow.apply"] = "workflow.apply"
    payload: ApplyWorkflowPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.definition.workflow_id}"


class ContactDetails(Contract):
    """What sending and matching need to know of a contact record."""

    email: EmailAddress | None = None
    phone: PhoneNumber | None = Field(
        None, description="Mobile number for SMS (and chat) steps, E.164 (+14155550123)."
    )
    aliases: tuple[EmailAddress, ...] = Field((), max_length=20)
    company_domain: str | None = Field(None, max_length=253)
    time_zone: TimeZoneName | None = Field(
        None, description="The record's IANA time zone: its steps' send window is kept in it."
    )


class EnrollPayload(Contract):
    workflow_id: Identifier
    record: RecordRef
    contact: ContactDetails | None = None
    actor: Actor
    audience_id: Identifier | None = Field(
        None, description="The audience the record came from: its exclusion rules apply too."
    )


class Enroll(Message):
    type: Literal["enrollment.enroll"] = "enrollment.enroll"
    payload: EnrollPayload


class EnrollTarget(Contract):
    """One record of an ``enrollment.bulk_enroll``."""

    record: RecordRef
    contact: ContactDetails | None = None


class BulkEnrollPayload(Contract):
    workflow_id: Identifier
    records: tuple[EnrollTarget, ...] = Field(min_length=1, max_length=1000)
    actor: Actor
    audience_id: Identifier | None = Field(
        None, description="The audience the records came from: its exclusion rules apply too."
    )


class BulkEnroll(Message):
    """Enroll many records into one workflow; answered per record, as one
    ``enrollment.enroll`` each (``enrollment.enrolled`` or ``enrollment.rejected`` with
    every reason), correlated to this command. A record named twice is enrolled once."""

    type: Literal["enrollment.bulk_enroll"] = "enrollment.bulk_enroll"
    payload: BulkEnrollPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class ExitReason(StrEnum):
    """Why an enrollment ended before completing. Trigger reasons match ``ExitTrigger``."""

    MANUAL = "manual"
    LINK_CLICKED = "link_clicked"
    REPLIED = "replied"
    COMPANY_REPLIED = "company_replied"
    NEW_CONVERSATION = "new_conversation"
    PAGE_VISITED = "page_visited"
    HARD_BOUNCED = "hard_bounced"
    UNSUBSCRIBED = "unsubscribed"
    MEETING_BOOKED = "meeting_booked"
    FIELD_CHANGED = "field_changed"
    MESSAGE_RECEIVED = "message_received"
    MESSAGE_SENT_BY_PERSON = "message_sent_by_person"
    USER_ASSIGNED = "user_assigned"
    UNENROLLED_BY_OTHER_WORKFLOW = "unenrolled_by_other_workflow"
    DEAL_WON = "deal_won"
    DEAL_LOST = "deal_lost"
    DEAL_OPENED = "deal_opened"
    DEAL_STAGE_ENTERED = "deal_stage_entered"
    DEAL_OPENED_AT_COMPANY = "deal_opened_at_company"
    EXCLUSION_MATCHED = "exclusion_matched"
    WORKFLOW_PAUSED = "workflow_paused"
    WORKFLOW_DELETED = "workflow_deleted"
    OWNER_REMOVED = "owner_removed"
    REENROLLED = "reenrolled"
    """An ``anytime`` workflow enrolled the record again: the live enrollment made way."""
    SEND_FAILED = "send_failed"


class ExitSource(StrEnum):
    MANUAL = "manual"
    BULK = "bulk"
    TRIGGER = "trigger"
    EXCLUSION = "exclusion"
    WORKFLOW = "workflow"


class TriggeringEvent(Contract):
    """The inbound event that caused an automatic exit, for explanations and audit."""

    message_id: uuid.UUID
    type: str = Field(max_length=100)
    topic: str = Field(max_length=249)
    occurred_at: AwareDatetime


class ExitPayload(Contract):
    record: RecordRef
    workflow_id: Identifier | None = Field(
        None, description="Exit this workflow; null exits every active workflow of the record."
    )
    enrollment_id: uuid.UUID | None = Field(
        None, description="Exit only this enrollment (ignored if it is no longer active)."
    )
    reason: ExitReason
    source: ExitSource
    actor: Actor
    triggering_event: TriggeringEvent | None = None


class Exit(Message):
    """Take a record out of one workflow or all of them. Exiting twice changes nothing."""

    type: Literal["enrollment.exit"] = "enrollment.exit"
    payload: ExitPayload


class PauseReason(StrEnum):
    """Why an enrollment was paused (``enrollment.pause``'s ``reason`` is open text; these
    are the reasons Offramp itself gives)."""

    MANUAL = "manual"
    OUT_OF_OFFICE = "out_of_office"
    """trigger-evaluator read an automatic reply: paused until the return date it found."""


class PausePayload(Contract):
    record: RecordRef
    workflow_id: Identifier | None = None
    enrollment_id: uuid.UUID | None = None
    until: AwareDatetime | None = Field(None, description="Resume then; null waits for resume.")
    reason: str = Field(PauseReason.MANUAL.value, max_length=100)
    actor: Actor
    triggering_event: TriggeringEvent | None = Field(
        None, description="The inbound event that caused an automatic pause (an auto-reply)."
    )


class Pause(Message):
    type: Literal["enrollment.pause"] = "enrollment.pause"
    payload: PausePayload


class ResumePayload(Contract):
    record: RecordRef
    workflow_id: Identifier | None = None
    enrollment_id: uuid.UUID | None = None
    actor: Actor
    pause_id: uuid.UUID | None = Field(
        None,
        description="Resume only an enrollment still in this pause: the `message_id` of its "
        "`enrollment.paused`. The scheduler sets it when a pause's `until` comes, so the "
        "timer of a pause that already ended never resumes a later one.",
    )


class Resume(Message):
    """Resume paused enrollments (a user, or the scheduler when a pause's ``until`` came)."""

    type: Literal["enrollment.resume"] = "enrollment.resume"
    payload: ResumePayload


class WorkflowCommandPayload(Contract):
    workflow_id: Identifier
    actor: Actor


class _WorkflowCommand(Message):
    payload: WorkflowCommandPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class PauseWorkflow(_WorkflowCommand):
    """Pause a workflow: every live enrollment exits with reason `workflow_paused` (in
    bounded chunks, with progress), and no record is enrolled until it is resumed.
    Answered by `workflow.status_changed`, then `workflow.exits_progress` per chunk."""

    type: Literal["workflow.pause"] = "workflow.pause"


class ResumeWorkflow(_WorkflowCommand):
    """Let a paused workflow enroll records again. Nobody who left when it paused comes
    back (restore them with `enrollment.restore` / `enrollment.bulk_restore`)."""

    type: Literal["workflow.resume"] = "workflow.resume"


class DeleteWorkflow(_WorkflowCommand):
    """Delete a workflow, with no undo: every live enrollment exits with reason
    `workflow_deleted`, and every later command about it is refused (`workflow_deleted`).
    Its versions, enrollments, history and events stay."""

    type: Literal["workflow.delete"] = "workflow.delete"


class ReorderWorkflowsPayload(Contract):
    workflow_ids: tuple[Identifier, ...] = Field(
        min_length=1,
        max_length=1000,
        description="The account's workflows in the order menus show them; workflows left "
        "out keep their relative order after these.",
    )
    actor: Actor


class ReorderWorkflows(Message):
    """Set the order of the account's workflow list (answered by `workflow.reordered`)."""

    type: Literal["workflow.reorder"] = "workflow.reorder"
    payload: ReorderWorkflowsPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflows"


class BulkExitPayload(Contract):
    workflow_id: Identifier
    records: tuple[RecordRef, ...] = Field(min_length=1, max_length=1000)
    reason: ExitReason = ExitReason.MANUAL
    actor: Actor


class BulkExit(Message):
    """Take many selected records out of one workflow; answered per record
    (`enrollment.exited`, `enrollment.dispatch_revoked` or `command.refused`)."""

    type: Literal["enrollment.bulk_exit"] = "enrollment.bulk_exit"
    payload: BulkExitPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class RestorePayload(Contract):
    record: RecordRef
    enrollment_id: uuid.UUID = Field(description="The exited enrollment to restore.")
    actor: Actor


class Restore(Message):
    """Put back an enrollment that exited by mistake, at the step after its last completed
    one (delays counted from the restore): a new enrollment, `restored_from` the old one.
    Answered by `enrollment.restored` (then `enrollment.enrolled` and
    `enrollment.step_scheduled`) or `command.refused`."""

    type: Literal["enrollment.restore"] = "enrollment.restore"
    payload: RestorePayload


class BulkRestorePayload(Contract):
    workflow_id: Identifier
    reason: ExitReason | None = Field(None, description="Only exits with this reason.")
    exited_from: AwareDatetime | None = Field(None, description="Only exits at or after this.")
    exited_until: AwareDatetime | None = Field(None, description="Only exits before this.")
    rule_id: Identifier | None = Field(
        None, description="Only exits by this exclusion rule (e.g. a wrong one)."
    )
    rule_version: int | None = Field(
        None, ge=1, description="With `rule_id`: only exits by this version of it."
    )
    dry_run: bool = Field(
        True,
        description="Only say what a restore would do (`enrollment.restore_previewed`); "
        "true by default, so that a preview comes first.",
    )
    limit: int = Field(1000, ge=1, le=1000, description="At most this many exits, oldest first.")
    actor: Actor


class BulkRestore(Message):
    """Restore every enrollment of a workflow that a given reason or time range exited."""

    type: Literal["enrollment.bulk_restore"] = "enrollment.bulk_restore"
    payload: BulkRestorePayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.workflow_id}"


class OwnerRemovalPolicy(StrEnum):
    """What happens to a workflow whose owner is deleted or downgraded."""

    EXIT = "exit"
    """Every live enrollment of its workflows exits with reason `owner_removed`."""
    REASSIGN = "reassign"
    """Its workflows get a new version owned by the account's named user; nobody exits."""


class SetOwnerRemovalPayload(Contract):
    policy: OwnerRemovalPolicy
    reassign_to_user_id: Identifier | None = Field(
        None, description="The user who takes the workflows over: required with `reassign`."
    )
    actor: Actor

    @model_validator(mode="after")
    def _check(self) -> SetOwnerRemovalPayload:
        if (self.policy is OwnerRemovalPolicy.REASSIGN) != (self.reassign_to_user_id is not None):
            raise ValueError("reassign_to_user_id is required with reassign, and only with it")
        return self


class SetOwnerRemoval(Message):
    """The account's setting for owners removed (default: `exit`); answered by
    `account.owner_removal_set`."""

    type: Literal["account.set_owner_removal"] = "account.set_owner_removal"
    payload: SetOwnerRemovalPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/account"


class RemoveOwnerPayload(Contract):
    user_id: Identifier
    change: UserChange
    actor: Actor
    triggering_event: TriggeringEvent | None = Field(
        None, description="The upstream event it comes from, if any."
    )


class RemoveOwner(Message):
    """A user who owns workflows was deleted or downgraded (enrollment also acts on the
    CRM's `user.changed` itself): each workflow the user owns exits its live enrollments
    with reason `owner_removed`, or is reassigned, as the account's setting says. Answered
    per workflow by `workflow.owner_removed`, or `command.refused` (`owns_no_workflow`)."""

    type: Literal["workflow.remove_owner"] = "workflow.remove_owner"
    payload: RemoveOwnerPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/user/{self.payload.user_id}"


COMMAND_MESSAGES: tuple[type[Message], ...] = (
    ApplyWorkflow,
    Enroll,
    BulkEnroll,
    Exit,
    Pause,
    Resume,
    PauseWorkflow,
    ResumeWorkflow,
    DeleteWorkflow,
    ReorderWorkflows,
    BulkExit,
    Restore,
    BulkRestore,
    SetOwnerRemoval,
    RemoveOwner,
)
