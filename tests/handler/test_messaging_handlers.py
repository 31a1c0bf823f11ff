"""messaging handlers and the sender's transaction against in-memory ports: due steps are
queued once, the projection follows the enrollment, and the send-time re-check decides
between ``message.sent`` and ``message.cancelled``."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.messaging.domain import (
    REARMABLE_CANCEL_REASON,
    ClaimedSend,
    EnrollmentKey,
    EnrollmentStatus,
    EnrollmentView,
    Send,
    SendKey,
    WorkflowStep,
)
from services.messaging.errors import ProviderError, StepMismatchError, UnknownWorkflowStepError
from services.messaging.handlers import build_handlers
from services.messaging.ports import CancelledSend, FailedAttempt, SentSend, StepKey
from services.messaging.providers import OutboundEmail
from services.messaging.sender import Sender
from shared.consumer import Batched, RejectedMessageError
from shared.contracts import (
    Actor,
    ActorKind,
    Message,
    RecordRef,
    RecordType,
    decode,
    derived_message_id,
    topics,
)
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource
from shared.contracts.events import (
    CancelReason,
    EnrolledPayload,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    ExitedPayload,
    MessageCancelled,
    MessageSent,
    PausedPayload,
    ResumedPayload,
    StepDue,
    StepDuePayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import Channel
from shared.contracts.workflow import Step, WorkflowDefinition
from shared.uow import UnitOfWork

pytestmark = pytest.mark.handler

ACCOUNT = "acme"
DOMAIN = "mail.acme.test"
DEFAULT_SENDER = "outreach@acme.test"
USER = Actor(kind=ActorKind.USER, id="u-1")
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ENROLLMENT = uuid.UUID("6f1c2b3a-0000-4000-8000-0000000000e1")


@dataclass
class _Row:
    send: Send
    status: str = "pending"
    cancel_reason: CancelReason | None = None
    recipient: str | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    next_attempt_at: datetime = NOW


@dataclass
class FakeStore:
    """Both storage ports in memory, with the SQL's semantics (no locking)."""

    steps: dict[tuple[str, str, int, int], WorkflowStep] = field(default_factory=dict)
    enrollments: dict[EnrollmentKey, EnrollmentView] = field(default_factory=dict)
    sends: dict[SendKey, _Row] = field(default_factory=dict)
    wakeups: int = 0
    calls: list[str] = field(default_factory=list)
    """The consumer side's calls, one per statement."""

    async def save_workflow_steps(self, steps: Sequence[WorkflowStep]) -> None:
        self.calls.append("save_workflow_steps")
        for step in steps:
            key = (step.account_id, step.workflow_id, step.version, step.step_index)
            self.steps.setdefault(key, step)

    async def workflow_steps(self, keys: Collection[StepKey]) -> dict[StepKey, WorkflowStep]:
        self.calls.append("workflow_steps")
        return {key: self.steps[key] for key in keys if key in self.steps}

    async def enrollments_for_update(
        self, keys: Collection[EnrollmentKey]
    ) -> dict[EnrollmentKey, EnrollmentView]:
        self.calls.append("enrollments_for_update")
        return {k: self.enrollments[k] for k in keys if k in self.enrollments}

    async def save_enrollments(self, enrollments: Sequence[EnrollmentView]) -> None:
        self.calls.append("save_enrollments")
        assert len({e.key for e in enrollments}) == len(enrollments)
        for enrollment in enrollments:
            self.enrollments[enrollment.key] = enrollment

    async def add_pending_sends(self, sends: Sequence[Send], *, now: datetime) -> set[SendKey]:
        self.calls.append("add_pending_sends")
        keys = [send.key for send in sends]
        assert len(set(keys)) == len(keys), "one statement can touch a row only once"
        queued: set[SendKey] = set()
        for key, send in zip(keys, sends, strict=True):
            row = self.sends.get(key)
            if row is None:
                self.sends[key] = _Row(send, next_attempt_at=now)
                queued.add(key)
            elif row.status == "cancelled" and row.cancel_reason is REARMABLE_CANCEL_REASON:
                row.status, row.cancel_reason, row.next_attempt_at = "pending", None, now
                queued.add(key)
        return queued

    async def rearm_paused_sends(self, keys: Collection[EnrollmentKey], *, now: datetime) -> int:
        self.calls.append("rearm_paused_sends")
        rearmed = 0
        for (account_id, eid, _), row in self.sends.items():
            paused = row.status == "cancelled" and row.cancel_reason is REARMABLE_CANCEL_REASON
            if (account_id, eid) in keys and paused:
                row.status, row.cancel_reason, row.next_attempt_at = "pending", None, now
                rearmed += 1
        return rearmed

    async def wake_senders(self) -> None:
        self.wakeups += 1

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        due = [
            (row, self.enrollments[key[:2]])
            for key, row in self.sends.items()
            if row.status == "pending"
            and row.next_attempt_at <= now
            and key[:2] in self.enrollments
        ]
        return [
            ClaimedSend(row.send, enrollment.status, enrollment.recipient_email)
            for row, enrollment in due[:limit]
        ]

    async def mark_sent(self, sent: Sequence[SentSend]) -> None:
        for item in sent:
            row = self.sends[(item.account_id, item.enrollment_id, item.step_index)]
            row.status, row.recipient, row.sent_at = "sent", item.recipient, item.sent_at
            row.send = replace(row.send, attempts=row.send.attempts + 1)

    async def mark_cancelled(self, cancelled: Sequence[CancelledSend]) -> None:
        for item in cancelled:
            row = self.sends[(item.account_id, item.enrollment_id, item.step_index)]
            row.status, row.cancel_reason = "cancelled", item.reason

    async def record_failures(self, failures: Sequence[FailedAttempt]) -> None:
        for item in failures:
            row = self.sends[(item.account_id, item.enrollment_id, item.step_index)]
            row.send = replace(row.send, attempts=row.send.attempts + 1)
            row.last_error = item.error
            if item.retry_at is None:
                row.status = "failed"
            else:
                row.next_attempt_at = item.retry_at

    async def cancel_orphans(self, *, created_before: datetime, limit: int) -> list[Send]:
        orphans = [
            row
            for key, row in self.sends.items()
            if row.status == "pending" and key[:2] not in self.enrollments
        ][:limit]
        for row in orphans:
            row.status, row.cancel_reason = "cancelled", CancelReason.NO_RECIPIENT
        return [row.send for row in orphans]


@dataclass
class FakeProvider:
    """Accepts every message, or fails the first ``failures`` calls."""

    failures: int = 0
    refuse: bool = False
    accepted: list[OutboundEmail] = field(default_factory=list)
    calls: int = 0

    async def send(self, email: OutboundEmail) -> None:
        self.calls += 1
        if self.refuse:
            raise ProviderError("550 no such user", permanent=True)
        if self.calls <= self.failures:
            raise ConnectionRefusedError("relay unreachable")
        self.accepted.append(email)


def published(uow: UnitOfWork[Any]) -> list[Message]:
    """What the transaction would publish, decoded back through the contracts."""
    messages = [decode(out.value, topic=out.topic) for out in uow.outgoing]
    assert all(isinstance(m, Message) for m in messages)
    return [m for m in messages if isinstance(m, Message)]


def new_uow() -> UnitOfWork[Any]:
    return UnitOfWork(None, None)


class Harness:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.handlers: dict[str, Batched] = dict(
            build_handlers(
                lambda _conn: self.store,
                message_id_domain=DOMAIN,
                default_sender=DEFAULT_SENDER,
                clock=lambda: NOW,
            )
        )
        self.topics: list[str] = []
        self.email = FakeProvider()
        self.sms = FakeProvider()
        self.sender = Sender(
            {Channel.EMAIL: self.email, Channel.SMS: self.sms, Channel.CHAT: FakeProvider()},
            max_attempts=3,
            backoff_s=2.0,
        )

    async def handle(self, *messages: Message) -> UnitOfWork[Any]:
        """Apply ``messages`` as one pipeline batch: consecutive ones of a handler are a run."""
        uow = new_uow()
        runs: list[tuple[Batched, list[Message]]] = []
        for message in messages:
            handler = self.handlers[message.type]
            if runs and runs[-1][0] is handler:
                runs[-1][1].append(message)
            else:
                runs.append((handler, [message]))
        for handler, run in runs:
            await handler.handle(uow, run)
        return uow

    async def send_due(self, *, now: datetime = NOW) -> list[Message]:
        uow = new_uow()
        await self.sender.process(self.store, uow, now=now)
        self.topics.extend(out.topic for out in uow.outgoing)
        return published(uow)

    def row(
        self, step_index: int = 0, enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT
    ) -> _Row:
        return self.store.sends[(account, enrollment_id, step_index)]

    def view(self, enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT) -> EnrollmentView:
        return self.store.enrollments[(account, enrollment_id)]


def ref(enrollment_id: uuid.UUID = ENROLLMENT) -> dict[str, Any]:
    return {
        "enrollment_id": enrollment_id,
        "workflow_id": "wf-1",
        "workflow_version": 1,
        "record": CONTACT,
    }


def workflow_applied(account: str = ACCOUNT) -> WorkflowApplied:
    definition = WorkflowDefinition(
        workflow_id="wf-1",
        name="Welcome",
        record_type=RecordType.CONTACT,
        steps=(
            Step(step_id="intro", subject="Hello\nthere", body="Hi!"),
            Step(step_id="nudge", channel=Channel.SMS, body="Ping", sender="+15550100"),
        ),
    )
    return WorkflowApplied.create(
        account_id=account,
        payload=WorkflowAppliedPayload(version=1, definition=definition, actor=USER),
    )


def enrolled(
    email: str | None = "Ada@Example.com",
    account: str = ACCOUNT,
    enrollment_id: uuid.UUID = ENROLLMENT,
) -> EnrollmentEnrolled:
    return EnrollmentEnrolled.create(
        account_id=account,
        payload=EnrolledPayload(
            **ref(enrollment_id), contact=ContactDetails(email=email), actor=USER
        ),
    )


def exited(enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT) -> EnrollmentExited:
    return EnrollmentExited.create(
        account_id=account,
        payload=ExitedPayload(
            **ref(enrollment_id),
            reason=ExitReason.REPLIED,
            source=ExitSource.TRIGGER,
            actor=USER,
            steps_completed=0,
        ),
    )


def paused() -> EnrollmentPaused:
    return EnrollmentPaused.create(
        account_id=ACCOUNT, payload=PausedPayload(**ref(), reason="out_of_office", actor=USER)
    )


def resumed() -> EnrollmentResumed:
    return EnrollmentResumed.create(account_id=ACCOUNT, payload=ResumedPayload(**ref(), actor=USER))


def step_due(
    step_index: int = 0,
    step_id: str = "intro",
    channel: Channel = Channel.EMAIL,
    enrollment_id: uuid.UUID = ENROLLMENT,
    account: str = ACCOUNT,
) -> StepDue:
    return StepDue.create(
        account_id=account,
        payload=StepDuePayload(
            **ref(enrollment_id),
            step_index=step_index,
            step_id=step_id,
            channel=channel,
            due_at=NOW,
        ),
    )


async def ready(harness: Harness, *events: Message) -> None:
    for event in (workflow_applied(), *events):
        await harness.handle(event)


# --- queueing due steps ---


async def test_a_due_step_is_queued_with_its_message_id_and_wakes_the_senders() -> None:
    harness = Harness()
    await ready(harness)
    due = step_due()
    uow = await harness.handle(due)
    row = harness.row()
    assert row.status == "pending"
    assert row.send.provider_message_id == f"<{ENROLLMENT}.0@{DOMAIN}>"
    assert (row.send.sender, row.send.subject, row.send.body) == (
        DEFAULT_SENDER,
        "Hello there",
        "Hi!",
    )
    assert row.send.cause_message_id == due.message_id
    assert harness.store.wakeups == 1
    assert uow.outgoing == []  # nothing is published before the send itself


async def test_a_step_is_queued_at_most_once_per_enrollment() -> None:
    harness = Harness()
    await ready(harness, enrolled())
    await harness.handle(step_due())
    await harness.send_due()
    await harness.handle(step_due())  # fired again (another message id): already sent
    assert harness.row().status == "sent"
    assert len(harness.store.sends) == 1
    assert harness.store.wakeups == 1
    assert await harness.send_due() == []
    assert len(harness.email.accepted) == 1


async def test_an_unknown_step_is_an_ordinary_error_so_the_pipeline_retries_it() -> None:
    harness = Harness()
    with pytest.raises(UnknownWorkflowStepError) as raised:
        await harness.handle(step_due())
    assert not isinstance(raised.value, RejectedMessageError)
    assert "wf-1" in str(raised.value)
    assert harness.store.sends == {}


async def test_a_step_that_disagrees_with_its_workflow_version_is_rejected() -> None:
    harness = Harness()
    await ready(harness)
    with pytest.raises(StepMismatchError) as raised:
        await harness.handle(step_due(step_id="nudge"))
    assert raised.value.kind == "step_mismatch"
    assert harness.store.sends == {}


# --- the enrollment projection ---


async def test_the_projection_keeps_the_recipient_and_never_revives_an_exit() -> None:
    harness = Harness()
    await harness.handle(enrolled())
    assert harness.view().status is EnrollmentStatus.ACTIVE
    assert harness.view().recipient_email == "ada@example.com"
    await harness.handle(exited())
    await harness.handle(enrolled())  # replayed
    await harness.handle(resumed())
    view = harness.view()
    assert view.status is EnrollmentStatus.EXITED
    assert view.recipient_email == "ada@example.com"


async def test_an_exit_seen_before_the_enrollment_still_ends_it() -> None:
    harness = Harness()
    await harness.handle(exited())
    await harness.handle(enrolled())
    view = harness.view()
    assert (view.status, view.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")


async def test_another_accounts_enrollment_with_the_same_id_is_another_row() -> None:
    harness = Harness()
    await harness.handle(enrolled())
    await harness.handle(exited(account="other-account"))
    # Ours is as it was; theirs is its own row, ended.
    assert harness.view().account_id == ACCOUNT
    assert harness.view().status is EnrollmentStatus.ACTIVE
    assert harness.view(account="other-account").status is EnrollmentStatus.EXITED


# --- the send-time re-check ---


async def test_an_active_enrollment_is_sent_and_reported_with_its_message_id() -> None:
    harness = Harness()
    await ready(harness, enrolled())
    due = step_due()
    await harness.handle(due)
    published = await harness.send_due()
    [email] = harness.email.accepted
    assert (email.message_id, email.recipient) == (f"<{ENROLLMENT}.0@{DOMAIN}>", "ada@example.com")
    assert [type(m) for m in published] == [MessageSent]
    assert harness.topics == [topics.MESSAGING_EVENTS]
    sent = published[0]
    assert isinstance(sent, MessageSent)
    assert sent.message_id == derived_message_id("message.sent", ACCOUNT, ENROLLMENT, 0)
    assert sent.payload.provider_message_id == email.message_id
    assert sent.payload.recipient == "ada@example.com"
    assert (sent.payload.step_index, sent.payload.step_id) == (0, "intro")
    assert (sent.causation_id, sent.correlation_id) == (due.message_id, due.message_id)
    assert harness.row().status == "sent"
    assert harness.row().sent_at == sent.payload.sent_at


@pytest.mark.parametrize(
    ("change", "reason"),
    [(exited, CancelReason.ENROLLMENT_EXITED), (paused, CancelReason.ENROLLMENT_PAUSED)],
)
async def test_an_enrollment_that_left_after_the_step_was_queued_gets_nothing(
    change: Any, reason: CancelReason
) -> None:
    harness = Harness()
    await ready(harness, enrolled(), step_due(), change())
    published = await harness.send_due()
    assert harness.email.calls == 0
    [cancelled] = published
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.message_id == derived_message_id("message.cancelled", ACCOUNT, ENROLLMENT, 0)
    assert cancelled.payload.reason is reason
    assert (harness.row().status, harness.row().cancel_reason) == ("cancelled", reason)


async def test_an_email_step_to_a_contact_without_an_address_is_cancelled() -> None:
    harness = Harness()
    await ready(harness, enrolled(email=None), step_due())
    [cancelled] = await harness.send_due()
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.NO_RECIPIENT
    assert harness.email.calls == 0


async def test_a_step_waits_for_its_enrollment_to_be_projected() -> None:
    harness = Harness()
    await ready(harness, step_due())  # step.due overtook enrollment.enrolled
    assert await harness.send_due() == []
    await harness.handle(enrolled())
    [sent] = await harness.send_due()
    assert isinstance(sent, MessageSent)


async def test_a_step_whose_enrollment_never_arrives_is_cancelled_as_having_no_recipient() -> None:
    harness = Harness()
    await ready(harness, step_due())
    uow = new_uow()
    assert await harness.sender.cancel_orphans(harness.store, uow, now=NOW) == 1
    [cancelled] = published(uow)
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.NO_RECIPIENT


async def test_sms_goes_to_its_own_provider_from_the_steps_sender() -> None:
    harness = Harness()
    await ready(harness, enrolled())
    await harness.handle(step_due(step_index=1, step_id="nudge", channel=Channel.SMS))
    [sent] = await harness.send_due()
    [message] = harness.sms.accepted
    assert (message.sender, message.recipient) == ("+15550100", "contact:c-1")
    assert isinstance(sent, MessageSent)
    assert sent.payload.channel is Channel.SMS
    assert harness.email.calls == 0


async def test_a_resume_requeues_a_step_cancelled_by_the_pause() -> None:
    harness = Harness()
    await ready(harness, enrolled(), step_due(), paused())
    await harness.send_due()
    assert harness.row().cancel_reason is CancelReason.ENROLLMENT_PAUSED
    wakeups = harness.store.wakeups
    await harness.handle(resumed())
    assert harness.row().status == "pending"
    assert harness.store.wakeups == wakeups + 1
    [sent] = await harness.send_due()
    assert isinstance(sent, MessageSent)
    assert len(harness.email.accepted) == 1


async def test_an_exit_is_never_requeued() -> None:
    harness = Harness()
    await ready(harness, enrolled(), step_due(), exited())
    await harness.send_due()
    await harness.handle(resumed())
    await harness.handle(step_due())
    assert harness.row().cancel_reason is CancelReason.ENROLLMENT_EXITED
    assert await harness.send_due() == []
    assert harness.email.calls == 0


# --- provider failures ---


async def test_a_failed_attempt_is_retried_later_with_the_same_message_id() -> None:
    harness = Harness()
    harness.email.failures = 1
    await ready(harness, enrolled(), step_due())
    assert await harness.send_due() == []
    row = harness.row()
    assert (row.status, row.send.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "relay unreachable" in row.last_error
    assert row.next_attempt_at == NOW + timedelta(seconds=2)
    assert await harness.send_due(now=NOW + timedelta(seconds=1)) == []  # not due yet
    [sent] = await harness.send_due(now=NOW + timedelta(seconds=2))
    assert isinstance(sent, MessageSent)
    assert [e.message_id for e in harness.email.accepted] == [f"<{ENROLLMENT}.0@{DOMAIN}>"]


async def test_a_send_that_keeps_failing_is_marked_failed_without_an_event() -> None:
    harness = Harness()
    harness.email.failures = 10
    await ready(harness, enrolled(), step_due())
    published = [
        *await harness.send_due(),
        *await harness.send_due(now=NOW + timedelta(minutes=1)),
        *await harness.send_due(now=NOW + timedelta(minutes=2)),
        *await harness.send_due(now=NOW + timedelta(hours=1)),
    ]
    assert published == []  # no message.failed contract yet: logged only
    assert (harness.row().status, harness.row().send.attempts) == ("failed", 3)
    assert harness.email.calls == 3
    assert (harness.sender.stats.retried, harness.sender.stats.failed) == (2, 1)


async def test_a_recipient_refused_for_good_fails_at_once() -> None:
    harness = Harness()
    harness.email.refuse = True
    await ready(harness, enrolled(), step_due())
    assert await harness.send_due() == []
    assert (harness.row().status, harness.row().send.attempts) == ("failed", 1)
    assert harness.row().last_error == "550 no such user"


# --- several messages in one run: one statement per kind of change, as if one by one ---

OTHER = uuid.UUID("6f1c2b3a-0000-4000-8000-0000000000e2")


async def test_due_steps_of_a_run_are_queued_with_one_lookup_one_insert_and_one_notify() -> None:
    harness = Harness()
    await ready(harness)
    harness.store.calls.clear()
    first, second = step_due(), step_due(enrollment_id=OTHER)
    await harness.handle(first, second)
    assert harness.store.calls == ["workflow_steps", "add_pending_sends"]
    assert harness.store.wakeups == 1
    assert harness.row().send.cause_message_id == first.message_id
    assert harness.row(enrollment_id=OTHER).send.cause_message_id == second.message_id
    assert harness.row(enrollment_id=OTHER).send.provider_message_id == f"<{OTHER}.0@{DOMAIN}>"


async def test_a_step_due_twice_in_a_run_is_queued_once_by_the_first() -> None:
    harness = Harness()
    await ready(harness)
    first, again = step_due(), step_due()
    await harness.handle(first, again)
    assert len(harness.store.sends) == 1
    assert harness.row().send.cause_message_id == first.message_id
    assert harness.store.wakeups == 1


async def test_a_run_of_steps_already_sent_wakes_nobody() -> None:
    harness = Harness()
    await ready(harness, enrolled(), step_due())
    await harness.send_due()
    wakeups = harness.store.wakeups
    await harness.handle(step_due(), step_due())
    assert harness.row().status == "sent"
    assert harness.store.wakeups == wakeups


async def test_one_unknown_step_fails_the_whole_run_so_the_pipeline_retries_each() -> None:
    harness = Harness()
    await ready(harness)
    with pytest.raises(UnknownWorkflowStepError):
        await harness.handle(step_due(), step_due(step_index=7, enrollment_id=OTHER))
    assert harness.store.sends == {}


async def test_enrolled_then_exited_in_one_run_leaves_the_enrollment_exited() -> None:
    harness = Harness()
    await harness.handle(enrolled(), enrolled(enrollment_id=OTHER), exited())
    assert harness.store.calls == ["enrollments_for_update", "save_enrollments"]
    view = harness.view()
    assert (view.status, view.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")
    assert harness.view(OTHER).status is EnrollmentStatus.ACTIVE


async def test_exited_then_enrolled_in_one_run_stays_exited_with_the_recipient() -> None:
    harness = Harness()
    await harness.handle(exited(), enrolled())
    view = harness.view()
    assert (view.status, view.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")


async def test_a_pause_and_resume_in_one_run_requeue_the_paused_send_once() -> None:
    harness = Harness()
    await ready(harness, enrolled(), step_due(), paused())
    await harness.send_due()
    assert harness.row().cancel_reason is CancelReason.ENROLLMENT_PAUSED
    wakeups = harness.store.wakeups
    harness.store.calls.clear()
    await harness.handle(resumed(), paused(), resumed())
    assert harness.store.calls == [
        "enrollments_for_update",
        "save_enrollments",
        "rearm_paused_sends",
    ]
    assert harness.row().status == "pending"
    assert harness.store.wakeups == wakeups + 1
    assert harness.view().status is EnrollmentStatus.ACTIVE


async def test_a_resume_then_an_exit_in_one_run_requeues_but_the_sender_cancels() -> None:
    harness = Harness()
    await ready(harness, enrolled(), step_due(), paused())
    await harness.send_due()
    await harness.handle(resumed(), exited())  # one by one: requeued, then exited
    assert harness.row().status == "pending"
    [cancelled] = await harness.send_due()
    assert isinstance(cancelled, MessageCancelled)
    assert cancelled.payload.reason is CancelReason.ENROLLMENT_EXITED
    assert harness.email.calls == 0


async def test_another_accounts_events_in_the_run_project_their_own_enrollment() -> None:
    harness = Harness()
    await harness.handle(enrolled(), enrolled("bob@example.com", account="other-account"), exited())
    assert harness.store.calls == ["enrollments_for_update", "save_enrollments"]
    ours, theirs = harness.view(), harness.view(account="other-account")
    assert (ours.status, ours.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")
    assert (theirs.status, theirs.recipient_email) == (
        EnrollmentStatus.ACTIVE,
        "bob@example.com",
    )


async def test_workflow_versions_of_a_run_are_saved_in_one_call() -> None:
    harness = Harness()
    applied = workflow_applied()
    await harness.handle(applied, workflow_applied())  # the second replays the same version
    assert harness.store.calls == ["save_workflow_steps"]
    assert sorted(k[3] for k in harness.store.steps) == [0, 1]
    assert harness.store.steps[(ACCOUNT, "wf-1", 1, 0)].subject == "Hello\nthere"


async def test_two_accounts_sends_for_one_enrollment_id_stay_apart() -> None:
    harness, other = Harness(), "other-account"
    await ready(harness, workflow_applied(other), enrolled(), enrolled("bob@example.com", other))
    await harness.handle(step_due(), step_due(account=other))
    assert len(harness.store.sends) == 2  # one send per account, not one for both
    await harness.handle(exited(account=other))

    messages = await harness.send_due()

    sent = [m for m in messages if isinstance(m, MessageSent)]
    cancelled = [m for m in messages if isinstance(m, MessageCancelled)]
    assert [(m.account_id, m.payload.recipient) for m in sent] == [(ACCOUNT, "ada@example.com")]
    assert [m.account_id for m in cancelled] == [other]
    assert sent[0].message_id != cancelled[0].message_id
    assert harness.row().status == "sent"
    assert harness.row(account=other).status == "cancelled"
