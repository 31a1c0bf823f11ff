"""Events Offramp publishes: workflow versions, enrollment lifecycle, steps, sends.

``offramp.workflow.events.v1`` and ``offramp.enrollment.events.v1`` are public: any
service may subscribe. ``offramp.scheduler.steps.v1`` and ``offramp.messaging.events.v1``
connect Offramp's own services but are documented the same way.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from shared.contracts.base import Actor, Contract, Identifier, Message, RecordRef
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource, TriggeringEvent
from shared.contracts.inbound import Channel, DeliveryStatus, FieldValue
from shared.contracts.workflow import WorkflowDefinition


class WorkflowAppliedPayload(Contract):
    version: int = Field(ge=1)
    definition: WorkflowDefinition
    actor: Actor


class WorkflowApplied(Message):
    """A workflow definition became version ``version`` (new enrollments use it)."""

    type: Literal["workflow.applied"] = "workflow.applied"
    payload: WorkflowAppliedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/workflow/{self.payload.definition.workflow_id}"


class EnrollmentRef(Contract):
    """Identifies one enrollment: one record in one version of one workflow."""

    enrollment_id: uuid.UUID
    workflow_id: Identifier
    workflow_version: int = Field(ge=1)
    record: RecordRef


class EnrolledPayload(EnrollmentRef):
    contact: ContactDetails | None = None
    actor: Actor


class EnrollmentEnrolled(Message):
    type: Literal["enrollment.enrolled"] = "enrollment.enrolled"
    payload: EnrolledPayload


class ExclusionHit(Contract):
    """Which exclusion rule matched a record, and on what: for rejections and exits."""

    rule_id: Identifier
    version: int = Field(ge=1)
    level: str = Field(max_length=20, description="`global`, `workflow` or `audience`.")
    condition: str = Field(max_length=2000, description="The conditions that matched.")
    values_seen: dict[str, FieldValue] = Field(
        default_factory=dict, description="The record's values of the fields those read."
    )


class Rejection(Contract):
    """One reason an enrollment was refused: a stable code and a readable detail."""

    code: str = Field(max_length=100)
    detail: str = Field(max_length=2000)
    rule_id: Identifier | None = None
    exclusion: ExclusionHit | None = Field(
        None, description="Code `excluded`: the rule, its version and level, what matched."
    )
    workflow_id: Identifier | None = Field(
        None,
        description="Codes `in_another_workflow`, `in_another_exclusive_workflow`: the "
        "workflow the record is live in.",
    )


class RejectedPayload(Contract):
    workflow_id: Identifier
    record: RecordRef
    actor: Actor
    rejections: tuple[Rejection, ...] = Field(min_length=1)


class EnrollmentRejected(Message):
    type: Literal["enrollment.rejected"] = "enrollment.rejected"
    payload: RejectedPayload


class StepScheduledPayload(EnrollmentRef):
    step_index: int = Field(ge=0)
    step_id: Identifier
    channel: Channel
    due_at: AwareDatetime = Field(
        description="The planned send time: in the workflow's send window, if it has one."
    )
    unplanned_at: AwareDatetime | None = Field(
        None,
        description="When the step fell due before the send window moved it (equal to "
        "`due_at` when it did not).",
    )


class EnrollmentStepScheduled(Message):
    """The enrollment's next step is due at ``due_at`` (the scheduler holds the timer)."""

    type: Literal["enrollment.step_scheduled"] = "enrollment.step_scheduled"
    payload: StepScheduledPayload


class StepCompletedPayload(EnrollmentRef):
    step_index: int = Field(ge=0)
    step_id: Identifier
    provider_message_id: str | None = Field(None, max_length=998)


class EnrollmentStepCompleted(Message):
    type: Literal["enrollment.step_completed"] = "enrollment.step_completed"
    payload: StepCompletedPayload


class PausedPayload(EnrollmentRef):
    until: AwareDatetime | None = None
    reason: str = Field(max_length=100)
    actor: Actor


class EnrollmentPaused(Message):
    type: Literal["enrollment.paused"] = "enrollment.paused"
    payload: PausedPayload


class ResumedPayload(EnrollmentRef):
    actor: Actor


class EnrollmentResumed(Message):
    type: Literal["enrollment.resumed"] = "enrollment.resumed"
    payload: ResumedPayload


class CompletedPayload(EnrollmentRef):
    steps_completed: int = Field(ge=0)


class EnrollmentCompleted(Message):
    type: Literal["enrollment.completed"] = "enrollment.completed"
    payload: CompletedPayload


class UnsentStep(Contract):
    """The step messaging will never send, which ended the enrollment: which one, and why."""

    step_index: int = Field(ge=0)
    step_id: Identifier
    kind: str = Field(
        max_length=100,
        description="`message.failed`'s kind (`hard_bounce`, `rejected`, `retries_exhausted`) "
        "or `message.cancelled`'s reason (`no_recipient`).",
    )
    reason: str = Field(max_length=2000, description="The provider's answer, or why not sent.")


class ExitedPayload(EnrollmentRef):
    reason: ExitReason
    source: ExitSource
    actor: Actor
    triggering_event: TriggeringEvent | None = None
    steps_completed: int = Field(ge=0, description="Steps sent before the exit.")
    unsent_step: UnsentStep | None = Field(
        None,
        description="Set when the exit comes from a send that failed or can never happen "
        "(reasons `hard_bounced` and `send_failed`); `triggering_event` is then that "
        "`message.failed` or `message.cancelled`.",
    )
    exclusion: ExclusionHit | None = Field(
        None, description="Reason `exclusion_matched`: the rule and version that matched."
    )


class EnrollmentExited(Message):
    """The enrollment ended early. Published once per enrollment; pending steps are void."""

    type: Literal["enrollment.exited"] = "enrollment.exited"
    payload: ExitedPayload


class StepDuePayload(EnrollmentRef):
    step_index: int = Field(ge=0)
    step_id: Identifier
    channel: Channel
    due_at: AwareDatetime


class StepDue(Message):
    """Scheduler: a step's time has come; enrollment grants its dispatch if the enrollment
    is still active at that step (``enrollment.step_granted``)."""

    type: Literal["step.due"] = "step.due"
    payload: StepDuePayload


class StepGrantedPayload(StepDuePayload):
    dispatch_id: uuid.UUID = Field(
        description="Names this dispatch of the step; a renewal repeats it with a later lease."
    )
    lease_until: AwareDatetime = Field(
        description="Messaging starts no provider call for this dispatch after this instant "
        "(it asks for a renewal with `message.deferred`)."
    )
    renewal: bool = Field(False, description="True when this grant renews an earlier one.")


class EnrollmentStepGranted(Message):
    """Enrollment: the enrollment is active at this step, so messaging may send it.

    Messaging sends only what was granted and not revoked. The grant and an exit of the
    enrollment are decided on the same locked enrollment row, so an exit either comes
    first (no grant) or revokes the grant and waits for the send's outcome.
    """

    type: Literal["enrollment.step_granted"] = "enrollment.step_granted"
    payload: StepGrantedPayload


class DispatchRevokedPayload(EnrollmentRef):
    dispatch_id: uuid.UUID
    step_index: int = Field(ge=0)
    step_id: Identifier
    reason: ExitReason = Field(description="Why the enrollment is exiting.")


class EnrollmentDispatchRevoked(Message):
    """Enrollment: an exit was decided while this step's dispatch was granted.

    Messaging starts no provider call for it any more and answers with the send's outcome:
    `message.cancelled` (`dispatch_revoked`) when no call had started, else the
    `message.sent` or `message.failed` of the call under way. The exit commits, and
    `enrollment.exited` is published, once that answer is in (or the grant's lease lapsed).
    """

    type: Literal["enrollment.dispatch_revoked"] = "enrollment.dispatch_revoked"
    payload: DispatchRevokedPayload


class MessageSentPayload(EnrollmentRef):
    step_index: int = Field(ge=0)
    step_id: Identifier
    channel: Channel
    provider_message_id: str = Field(
        max_length=998, description="For email, the Message-ID header replies will quote."
    )
    recipient: str = Field(max_length=320)
    sent_at: AwareDatetime
    dispatch_id: uuid.UUID | None = Field(None, description="The grant it was sent under.")
    provider_reference: str | None = Field(
        None,
        max_length=256,
        description="The provider's own id for the message (an HTTP API's message id, e.g. a "
        "Twilio SID); null for SMTP, whose id is provider_message_id.",
    )
    segments: int | None = Field(
        None,
        ge=1,
        description="SMS only: the segments the body takes (GSM-7 160/153, UCS-2 70/67).",
    )


class MessageSent(Message):
    type: Literal["message.sent"] = "message.sent"
    payload: MessageSentPayload


class CancelReason(StrEnum):
    ENROLLMENT_EXITED = "enrollment_exited"
    ENROLLMENT_COMPLETED = "enrollment_completed"
    ENROLLMENT_PAUSED = "enrollment_paused"
    NO_RECIPIENT = "no_recipient"
    DISPATCH_REVOKED = "dispatch_revoked"
    """The enrollment revoked the step's grant (it is exiting) before any call started."""


class MessageCancelledPayload(EnrollmentRef):
    step_index: int = Field(ge=0)
    step_id: Identifier
    reason: CancelReason
    dispatch_id: uuid.UUID | None = Field(None, description="The grant it was due under.")


class MessageCancelled(Message):
    """A due step was not sent: its grant was revoked, or the enrollment had left or
    paused (re-checked at send time), or there is no one to send it to."""

    type: Literal["message.cancelled"] = "message.cancelled"
    payload: MessageCancelledPayload


class FailureKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    """The recipient does not exist or refuses mail for good (e.g. SMTP 5.1.1)."""
    REJECTED = "rejected"
    """Another permanent refusal by the provider (content, policy, invalid sender...)."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """Transient failures went on for longer than the retry budget."""


class MessageFailedPayload(EnrollmentRef):
    step_index: int = Field(ge=0)
    step_id: Identifier
    channel: Channel
    provider_message_id: str | None = Field(None, max_length=998)
    recipient: str | None = Field(None, max_length=320)
    kind: FailureKind
    reason: str = Field(max_length=2000, description="The provider's last answer, in words.")
    attempts: int = Field(ge=1)
    failed_at: AwareDatetime
    dispatch_id: uuid.UUID | None = Field(None, description="The grant it was due under.")


class MessageFailed(Message):
    """A due step could not be delivered and will not be tried again."""

    type: Literal["message.failed"] = "message.failed"
    payload: MessageFailedPayload


class MessageUndeliveredPayload(EnrollmentRef):
    step_index: int = Field(ge=0)
    step_id: Identifier
    channel: Channel
    provider_message_id: str = Field(max_length=998)
    provider_reference: str | None = Field(None, max_length=256)
    kind: FailureKind = Field(
        description="hard_bounce when the provider's code says the number cannot receive "
        "messages, else rejected."
    )
    status: DeliveryStatus
    error_code: str | None = Field(None, max_length=64)
    reason: str = Field(max_length=2000, description="The provider's report, in words.")
    reported_at: AwareDatetime = Field(description="When the provider's report was made.")


class MessageUndelivered(Message):
    """A step that went out (``message.sent``) was reported undelivered by its provider
    later (a delivery-status callback): a permanent failure known only after the send.
    Recorded by messaging; enrollment does not act on it (the step counts as sent)."""

    type: Literal["message.undelivered"] = "message.undelivered"
    payload: MessageUndeliveredPayload


class MessageDeferredPayload(EnrollmentRef):
    dispatch_id: uuid.UUID
    step_index: int = Field(ge=0)
    step_id: Identifier
    channel: Channel
    lease_until: AwareDatetime = Field(description="The lapsed lease.")
    next_attempt_at: AwareDatetime = Field(description="When messaging would try it next.")
    attempts: int = Field(ge=0, description="Provider calls made so far.")
    reason: str = Field(max_length=2000)


class MessageDeferred(Message):
    """A granted step has not gone out and its grant's lease has lapsed (the provider was
    unavailable, or messaging was behind): messaging starts no call for it until enrollment
    renews the grant (a new `enrollment.step_granted` with `renewal: true`)."""

    type: Literal["message.deferred"] = "message.deferred"
    payload: MessageDeferredPayload


class DeadLetterPayload(Contract):
    consumer: str = Field(description="The consumer group that gave up on the message.")
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: str | None = None
    message_id: uuid.UUID | None = Field(None, description="The envelope's id, if it parsed.")
    message_type: str | None = None
    error_kind: str = Field(description="`invalid_json`, `invalid_message`, `rejected`, ...")
    reason: str = Field(description="What was wrong, in words.")
    attempts: int = Field(1, ge=1)
    original_value: str = Field(description="The original bytes (UTF-8, or base64 with b64:).")
    original_headers: dict[str, str] = Field(default_factory=dict)
    original_truncated: bool = Field(
        False,
        description="True when `original_value` holds only the start of the record (it was "
        "too large to keep whole): replay then reads the record from its source coordinates.",
    )
    original_size: int | None = Field(
        None, ge=0, description="Size of the original value in bytes (null: no value)."
    )


class DeadLettered(Message):
    """A message that could not be applied: kept here whole, with the reason."""

    type: Literal["deadletter.recorded"] = "deadletter.recorded"
    payload: DeadLetterPayload

    def partition_key(self) -> str:
        return self.payload.source_key or f"{self.account_id}/-"


WORKFLOW_EVENT_MESSAGES: tuple[type[Message], ...] = (WorkflowApplied,)
ENROLLMENT_EVENT_MESSAGES: tuple[type[Message], ...] = (
    EnrollmentEnrolled,
    EnrollmentRejected,
    EnrollmentStepScheduled,
    EnrollmentStepCompleted,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentStepGranted,
    EnrollmentDispatchRevoked,
)
SCHEDULER_MESSAGES: tuple[type[Message], ...] = (StepDue,)
MESSAGING_MESSAGES: tuple[type[Message], ...] = (
    MessageSent,
    MessageCancelled,
    MessageFailed,
    MessageDeferred,
    MessageUndelivered,
)
DEAD_LETTER_MESSAGES: tuple[type[Message], ...] = (DeadLettered,)
