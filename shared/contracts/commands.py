"""Commands: what UIs, the operator CLI and trigger-evaluator ask enrollment to do.

All go to the ``offramp.commands.v1`` topic. Enrollment is the only consumer; the outcome
of every command is an event on ``offramp.enrollment.events.v1`` or
``offramp.workflow.events.v1`` (a command that cannot apply becomes
``enrollment.rejected`` or a dead letter with the reason).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

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


COMMAND_MESSAGES: tuple[type[Message], ...] = (ApplyWorkflow, Enroll, Exit, Pause, Resume)
