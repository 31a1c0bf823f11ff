"""Pure decisions of messaging: whether a granted step is sent, cancelled or deferred (its
grant's lease lapsed), how a failed send is retried or given up, and the Message-ID a send
carries. The enrollment projection is in ``projection``; a step that arrives before its
workflow version in ``parking``; revoked grants and ended enrollments in ``stopping``.

No I/O here: handlers and the sender load state, call these functions and save the result.
The outcomes of a send (``Sent``, ``Cancelled``, ``Failed``) carry the send itself, so the
store records them and ``messages`` turns them into events without looking anything up.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.messaging.projection import EnrollmentStatus
from shared.contracts import RecordRef, derived_message_id
from shared.contracts.events import CancelReason, FailureKind, MessageCancelled
from shared.contracts.inbound import Channel
from shared.contracts.workflow import WorkflowDefinition

SendKey = tuple[str, uuid.UUID, int]
"""(account id, enrollment id, step index): one send."""


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """One step of one applied workflow version, as ``workflow.applied`` defined it."""

    account_id: str
    workflow_id: str
    version: int
    step_index: int
    step_id: str
    channel: Channel
    subject: str | None
    body: str
    sender: str | None


def steps_of(account_id: str, version: int, definition: WorkflowDefinition) -> list[WorkflowStep]:
    """The steps of one applied workflow version, as messaging keeps them."""
    return [
        WorkflowStep(
            account_id=account_id,
            workflow_id=definition.workflow_id,
            version=version,
            step_index=index,
            step_id=step.step_id,
            channel=step.channel,
            subject=step.subject,
            body=step.body,
            sender=step.sender,
        )
        for index, step in enumerate(definition.steps)
    ]


def provider_message_id(enrollment_id: uuid.UUID, step_index: int, domain: str) -> str:
    """The Message-ID header of a step's email, the same on every attempt.

    Derived from the send's key so a re-send after a crash carries the same id (receivers
    and our reply matching see one message), and replies quoting it name the enrollment.
    """
    return f"<{enrollment_id}.{step_index}@{domain}>"


_LINE_BREAKS = re.compile(r"[\r\n]+")


def render_subject(subject: str | None) -> str:
    """A subject safe for one header line: line breaks would inject headers or be refused."""
    return _LINE_BREAKS.sub(" ", subject or "").strip()


@dataclass(frozen=True, slots=True)
class Send:
    """A step to send to one enrollment: one row of ``sends``."""

    enrollment_id: uuid.UUID
    step_index: int
    account_id: str
    workflow_id: str
    workflow_version: int
    record: RecordRef
    step_id: str
    channel: Channel
    sender: str
    subject: str
    body: str
    provider_message_id: str
    attempts: int = 0
    cause_message_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    first_failed_at: datetime | None = None
    """When the current run of transient failures began (None: none yet)."""
    attempt_id: uuid.UUID | None = None
    """The claim that holds the row while it is ``sending`` (as read, or as just claimed):
    an outcome is recorded only while the row still holds it."""
    dispatch_id: uuid.UUID | None = None
    """The enrollment's grant this send is queued under (None: queued before grants)."""
    lease_until: datetime | None = None
    """No provider call for it starts at or after this instant (None: no lease, a row
    queued before grants existed)."""

    @property
    def key(self) -> SendKey:
        return (self.account_id, self.enrollment_id, self.step_index)


def send_event_id(kind: str, send: Send) -> uuid.UUID:
    """The id of the ``kind`` of message about ``send`` (``message.sent``,
    ``message.failed``): the same however often the step is sent, so consumers drop the
    repeats, and never the same for two accounts' sends."""
    return derived_message_id(kind, send.account_id, send.enrollment_id, send.step_index)


def cancel_event_id(
    account_id: str,
    enrollment_id: uuid.UUID,
    step_index: int,
    *,
    reason: CancelReason,
    dispatch_id: uuid.UUID | None,
) -> uuid.UUID:
    """The id of a ``message.cancelled``. A send under a grant may be cancelled more than
    once for different reasons (for a pause, re-armed by a new grant, then revoked), and
    consumers drop a message id they have seen: each (grant, reason) gets its own id, the
    same on every repeat. A send queued before grants keeps the id it always had."""
    if dispatch_id is None:
        return derived_message_id(MessageCancelled.TYPE, account_id, enrollment_id, step_index)
    return derived_message_id(
        MessageCancelled.TYPE, account_id, enrollment_id, step_index, dispatch_id, reason.value
    )


def pending_send(
    step: WorkflowStep,
    *,
    enrollment_id: uuid.UUID,
    record: RecordRef,
    message_id_domain: str,
    default_sender: str,
    cause_message_id: uuid.UUID,
    correlation_id: uuid.UUID,
    dispatch_id: uuid.UUID | None,
    lease_until: datetime | None,
) -> Send:
    """The send a granted step asks for, rendered from the step as its workflow version
    has it, under that grant."""
    return Send(
        enrollment_id=enrollment_id,
        step_index=step.step_index,
        account_id=step.account_id,
        workflow_id=step.workflow_id,
        workflow_version=step.version,
        record=record,
        step_id=step.step_id,
        channel=step.channel,
        sender=step.sender or default_sender,
        subject=render_subject(step.subject),
        body=step.body,
        provider_message_id=provider_message_id(enrollment_id, step.step_index, message_id_domain),
        cause_message_id=cause_message_id,
        correlation_id=correlation_id,
        dispatch_id=dispatch_id,
        lease_until=lease_until,
    )


@dataclass(frozen=True, slots=True)
class ClaimedSend:
    """A due send, locked for this transaction, with its enrollment as it is now."""

    send: Send
    enrollment_status: EnrollmentStatus
    recipient_email: str | None
    after_crash: bool = False
    """The send was found ``sending`` past its lease: a provider call may have been made
    (and accepted) by a process that died before recording it."""
    due_at: datetime | None = None
    """When it fell due (its next attempt): the order a full sender's sends go out in."""
    recipient_phone: str | None = None
    unreserved: bool = False
    """An SMS of a metered account whose segments are not reserved (yet)."""


@dataclass(frozen=True, slots=True)
class Deliver:
    recipient: str


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class Defer:
    """The grant's lease has lapsed: no call may start; ask enrollment for a renewal."""

    dispatch_id: uuid.UUID
    lease_until: datetime
    """The lapsed lease."""


_CANCEL_BECAUSE = {
    EnrollmentStatus.EXITED: CancelReason.ENROLLMENT_EXITED,
    EnrollmentStatus.COMPLETED: CancelReason.ENROLLMENT_COMPLETED,
    EnrollmentStatus.PAUSED: CancelReason.ENROLLMENT_PAUSED,
}


def decide_send(claimed: ClaimedSend, *, now: datetime) -> Deliver | Cancel | Defer:
    """Send only to an active enrollment that has somewhere to send to, under a grant whose
    lease is still valid at ``now`` (the sender's clock).

    A send that can never go out is cancelled first (no call is involved, so a lapsed
    lease does not matter). A lapsed lease defers the send: enrollment renews the grant,
    or commits the exit it was waiting on, knowing no call started. Email goes to the
    contact's address and SMS to its phone number, both from ``enrollment.enrolled``;
    chat is addressed by the record (the chat tool knows its conversations).
    """
    reason = _CANCEL_BECAUSE.get(claimed.enrollment_status)
    if reason is not None:
        return Cancel(reason)
    recipient = recipient_of(claimed)
    if recipient is None:
        return Cancel(CancelReason.NO_RECIPIENT)
    return lapsed_grant(claimed.send, now) or Deliver(recipient)


def lapsed_grant(send: Send, now: datetime) -> Defer | None:
    """``send``'s grant when its lease has lapsed at ``now``: no provider call for it may
    start. None: one may (a send queued before grants has no lease)."""
    if send.dispatch_id is None or send.lease_until is None or now < send.lease_until:
        return None
    return Defer(send.dispatch_id, send.lease_until)


def recipient_of(claimed: ClaimedSend) -> str | None:
    """Where ``claimed`` goes, whatever its enrollment's status (None: nowhere)."""
    if claimed.send.channel is Channel.EMAIL:
        return claimed.recipient_email or None
    if claimed.send.channel is Channel.SMS:
        return claimed.recipient_phone or None
    record = claimed.send.record
    return f"{record.type.value}:{record.id}"


REARMABLE_CANCEL_REASON = CancelReason.ENROLLMENT_PAUSED
"""A send cancelled for a pause was never sent, so a new grant of its step (enrollment
grants it again after the resume) queues it again; a resume alone does not."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Transient failures are retried with capped exponential backoff for ``budget_s``
    after the first of them; then the send fails as ``retries_exhausted``."""

    budget_s: float = 6 * 3600.0
    backoff_s: float = 2.0
    backoff_max_s: float = 300.0


@dataclass(frozen=True, slots=True)
class RetryAt:
    at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    kind: FailureKind


def after_failure(
    *,
    attempts_before: int,
    first_failed_at: datetime | None,
    now: datetime,
    policy: RetryPolicy,
    failure: FailureKind | None = None,
    retry_after_s: float | None = None,
) -> RetryAt | GiveUp:
    """A provider call failed: give up at once when the provider said it will never accept
    this message (``failure``), or when transient failures have lasted the whole budget;
    else try again after a doubling delay, or after the provider's ``Retry-After`` when it
    asked for longer (beyond the backoff cap), the last try falling at the budget's end."""
    if failure is not None:
        return GiveUp(failure)
    deadline = (first_failed_at or now) + timedelta(seconds=policy.budget_s)
    if now >= deadline:
        return GiveUp(FailureKind.RETRIES_EXHAUSTED)
    delay = min(policy.backoff_s * 2 ** min(attempts_before, 32), policy.backoff_max_s)
    delay = max(delay, min(retry_after_s or 0.0, policy.budget_s))
    return RetryAt(min(now + timedelta(seconds=delay), deadline))


@dataclass(frozen=True, slots=True)
class Sent:
    """The provider accepted ``send`` for ``recipient``: recorded, and ``message.sent``."""

    send: Send
    recipient: str
    sent_at: datetime
    provider_reference: str | None = None
    """The provider's own id for the message (an HTTP API's), when it gave one."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """``send`` will never go out: recorded, and ``message.cancelled`` with the reason."""

    send: Send
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class Failed:
    """One provider attempt of ``send`` failed at ``failed_at``: retried at ``retry_at``, or
    (``retry_at`` None) the send failed for good as ``kind``, and ``message.failed``."""

    send: Send
    error: str
    retry_at: datetime | None
    failed_at: datetime
    kind: FailureKind | None = None
    recipient: str | None = None

    @property
    def attempts(self) -> int:
        """Attempts made, this one included."""
        return self.send.attempts + 1


DEFER_REASON = (
    "the grant's lease lapsed before the send could start (provider unavailable or "
    "messaging behind); no provider call was started under it"
)


@dataclass(frozen=True, slots=True)
class Deferred:
    """``send``'s grant lapsed before its call could start: back to the queue, claimed
    again only once the grant is renewed, and ``message.deferred`` asks for that."""

    send: Send
    grant: Defer
    """The grant and its lapsed lease (the one a renewal must replace)."""
    deferred_at: datetime
    after_crash: bool = False
    """A crash's send stays to be resolved as one when it is claimed again."""


@dataclass(frozen=True, slots=True)
class Released:
    """A claimed send whose provider call never started (the service began stopping): it
    goes back to the queue as it was, a crash's send still to be resolved as one."""

    send: Send
    after_crash: bool


def cancelled(claimed: ClaimedSend, decision: Cancel) -> Cancelled:
    """The re-check at send time stopped ``claimed``."""
    return Cancelled(claimed.send, decision.reason)


def orphaned(send: Send) -> Cancelled:
    """A send whose enrollment never reached the projection has nobody to go to."""
    return Cancelled(send, CancelReason.NO_RECIPIENT)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one provider call came to: accepted at a time, or an error."""

    accepted_at: datetime | None = None
    error: str | None = None
    failure: FailureKind | None = None
    """How the provider refused this message for good; None: the error is transient."""
    retry_after_s: float | None = None
    """The provider asked to wait this long before the next call (Retry-After)."""
    provider_reference: str | None = None


def after_attempt(
    send: Send, recipient: str, attempt: Attempt, *, now: datetime, policy: RetryPolicy
) -> Sent | Failed:
    """What a provider call makes of ``send``: sent, or failed and retried (or given up)."""
    if attempt.accepted_at is not None:
        return Sent(send, recipient, attempt.accepted_at, attempt.provider_reference)
    next_step = after_failure(
        attempts_before=send.attempts,
        first_failed_at=send.first_failed_at,
        now=now,
        policy=policy,
        failure=attempt.failure,
        retry_after_s=attempt.retry_after_s,
    )
    error = attempt.error or "unknown error"
    if isinstance(next_step, RetryAt):
        return Failed(send, error, next_step.at, now, recipient=recipient)
    return Failed(send, error, None, now, kind=next_step.kind, recipient=recipient)
