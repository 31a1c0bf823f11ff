"""``MessagingStore`` in memory, with the SQL's semantics (no locking); passes tests/contract.

Also a provider that accepts or fails on demand, and the handler harness with messaging's
sender beside it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.messaging.config import MessagingSettings
from services.messaging.domain import (
    REARMABLE_CANCEL_REASON,
    Cancelled,
    ClaimedSend,
    EnrollmentKey,
    EnrollmentView,
    Failed,
    Send,
    SendKey,
    Sent,
    WorkflowStep,
)
from services.messaging.errors import ProviderError
from services.messaging.handlers import build_handlers
from services.messaging.ports import MessagingStore, StepKey
from services.messaging.providers import OutboundEmail
from services.messaging.sender import Sender
from shared.contracts import TOPIC_OF_TYPE, Message
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_events import ACCOUNT, T0
from tests.support.builders.messaging_events import (
    ENROLLMENT,
    messaging_settings,
    workflow_applied,
)
from tests.support.harness import Harness


@dataclass
class SendRow:
    """One row of ``sends``: the send (its ``attempts`` counted) and where it stands."""

    send: Send
    next_attempt_at: datetime
    created_at: datetime
    status: str = "pending"
    cancel_reason: CancelReason | None = None
    recipient: str | None = None
    sent_at: datetime | None = None
    last_error: str | None = None


@dataclass
class FakeMessagingStore:
    steps: dict[StepKey, WorkflowStep] = field(default_factory=dict)
    enrollments: dict[EnrollmentKey, EnrollmentView] = field(default_factory=dict)
    sends: dict[SendKey, SendRow] = field(default_factory=dict)
    wakeups: int = 0
    """NOTIFYs sent (a run wakes the senders once, one message at a time once each)."""
    calls: list[str] = field(default_factory=list)
    """Method names in call order: one call stands for one SQL statement (NOTIFY apart:
    ``wakeups`` counts those)."""

    def snapshot(self) -> object:
        return (dict(self.steps), dict(self.enrollments), copy.deepcopy(self.sends))

    # --- the consumer side ---

    async def save_workflow_steps(self, steps: Sequence[WorkflowStep]) -> None:
        self.calls.append("save_workflow_steps")
        for step in steps:  # ON CONFLICT DO NOTHING
            key = (step.account_id, step.workflow_id, step.version, step.step_index)
            self.steps.setdefault(key, step)

    async def workflow_steps(self, keys: Collection[StepKey]) -> dict[StepKey, WorkflowStep]:
        self.calls.append("workflow_steps")
        return {key: self.steps[key] for key in keys if key in self.steps}

    async def enrollments_for_update(
        self, keys: Collection[EnrollmentKey]
    ) -> dict[EnrollmentKey, EnrollmentView]:
        self.calls.append("enrollments_for_update")
        return {k: self.enrollments[k] for k in sorted(keys) if k in self.enrollments}

    async def save_enrollments(self, enrollments: Sequence[EnrollmentView]) -> None:
        self.calls.append("save_enrollments")
        assert len({e.key for e in enrollments}) == len(enrollments), (
            "one statement can touch a row only once"
        )
        for enrollment in enrollments:
            known = self.enrollments.get(enrollment.key)
            if known is None:
                self.enrollments[enrollment.key] = enrollment
            else:  # ON CONFLICT DO UPDATE SET status, recipient_email
                self.enrollments[enrollment.key] = replace(
                    known, status=enrollment.status, recipient_email=enrollment.recipient_email
                )

    async def add_pending_sends(self, sends: Sequence[Send], *, now: datetime) -> set[SendKey]:
        self.calls.append("add_pending_sends")
        keys = [send.key for send in sends]
        assert len(set(keys)) == len(keys), "one statement can touch a row only once"
        queued: set[SendKey] = set()
        for key, send in zip(keys, sends, strict=True):
            row = self.sends.get(key)
            if row is None:
                self.sends[key] = SendRow(replace(send, attempts=0), now, created_at=now)
                queued.add(key)
            elif self._paused(row):  # DO UPDATE ... WHERE cancelled for a pause
                self._requeue(row, now)
                queued.add(key)
        return queued

    async def rearm_paused_sends(self, keys: Collection[EnrollmentKey], *, now: datetime) -> int:
        self.calls.append("rearm_paused_sends")
        rearmed = 0
        for (account_id, enrollment_id, _), row in self.sends.items():
            if (account_id, enrollment_id) in keys and self._paused(row):
                self._requeue(row, now)
                rearmed += 1
        return rearmed

    async def wake_senders(self) -> None:
        self.wakeups += 1

    @staticmethod
    def _paused(row: SendRow) -> bool:
        return row.status == "cancelled" and row.cancel_reason is REARMABLE_CANCEL_REASON

    @staticmethod
    def _requeue(row: SendRow, now: datetime) -> None:
        row.status, row.cancel_reason, row.next_attempt_at = "pending", None, now

    # --- the sender side ---

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        self.calls.append("claim_due")
        due = sorted(
            (
                row
                for key, row in self.sends.items()
                if row.status == "pending"
                and row.next_attempt_at <= now
                and key[:2] in self.enrollments  # the inner join
            ),
            key=lambda row: row.next_attempt_at,
        )[:limit]
        claimed = []
        for row in due:
            enrollment = self.enrollments[row.send.key[:2]]
            claimed.append(ClaimedSend(row.send, enrollment.status, enrollment.recipient_email))
        return claimed

    async def mark_sent(self, sent: Sequence[Sent]) -> None:
        self.calls.append("mark_sent")
        for item in sent:
            row = self.sends[item.send.key]
            row.status, row.recipient, row.sent_at = "sent", item.recipient, item.sent_at
            row.send = replace(row.send, attempts=row.send.attempts + 1)
            row.last_error = None

    async def mark_cancelled(self, cancelled: Sequence[Cancelled]) -> None:
        self.calls.append("mark_cancelled")
        for item in cancelled:
            row = self.sends[item.send.key]
            row.status, row.cancel_reason = "cancelled", item.reason

    async def record_failures(self, failures: Sequence[Failed]) -> None:
        self.calls.append("record_failures")
        for item in failures:
            row = self.sends[item.send.key]
            row.send = replace(row.send, attempts=row.send.attempts + 1)
            row.last_error = item.error
            if item.retry_at is None:
                row.status = "failed"
            else:
                row.status, row.next_attempt_at = "pending", item.retry_at

    async def cancel_orphans(self, *, created_before: datetime, limit: int) -> list[Send]:
        self.calls.append("cancel_orphans")
        orphans = [
            row
            for key, row in self.sends.items()
            if row.status == "pending"
            and row.created_at < created_before
            and key[:2] not in self.enrollments
        ][:limit]
        for row in orphans:
            row.status, row.cancel_reason = "cancelled", CancelReason.NO_RECIPIENT
        return [row.send for row in orphans]


@dataclass
class FakeProvider:
    """Accepts every message, or fails the first ``failures`` calls, or refuses for good."""

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


SenderRound = Callable[[UnitOfWork[MessagingStore]], Awaitable[int]]


class MessagingHarness(Harness[FakeMessagingStore]):
    """Messaging's handlers on the harness, and its sender on the same fake store.

    A sender round is not a consumer case: it runs once, on the store the batches went to,
    and the store that takes messages one by one goes on from where it left.
    """

    def __init__(
        self, settings: MessagingSettings, *, now: datetime, max_attempts: int, backoff_s: float
    ) -> None:
        super().__init__(build_handlers(settings), FakeMessagingStore, now=now)
        self.email, self.sms, self.chat = FakeProvider(), FakeProvider(), FakeProvider()
        self._round_now = now
        self.sender = Sender(
            {Channel.EMAIL: self.email, Channel.SMS: self.sms, Channel.CHAT: self.chat},
            clock=lambda: self._round_now,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
        )
        self.topics: list[str] = []
        """The topic of every message the sender published, in order."""

    async def ready(self, *events: Message) -> None:
        """``workflow_applied()`` and then ``events`` happened before the case."""
        await self.given(workflow_applied(), *events)

    async def send_due(self, *, now: datetime | None = None) -> list[Message]:
        """One sender transaction at ``now``: what it publishes."""
        at = now or self.now
        _, published = await self._round(lambda uow: self.sender.process(uow, now=at), at)
        return published

    async def cancel_orphans(self, *, now: datetime) -> tuple[int, list[Message]]:
        """One transaction cancelling orphans at ``now``: how many, and what it publishes."""
        return await self._round(lambda uow: self.sender.cancel_orphans(uow, now=now), now)

    async def _round(self, work: SenderRound, now: datetime) -> tuple[int, list[Message]]:
        self._round_now = now
        count, outcome = await self.step(work)
        self.topics.extend(TOPIC_OF_TYPE[m.type] for m in outcome.published)
        return count, outcome.published

    def row(
        self, step_index: int = 0, enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT
    ) -> SendRow:
        return self.store.sends[(account, enrollment_id, step_index)]

    def view(self, enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT) -> EnrollmentView:
        return self.store.enrollments[(account, enrollment_id)]


def messaging_harness() -> MessagingHarness:
    """The handler tests' harness: at ``T0``, 3 provider attempts, 2 s first backoff."""
    return MessagingHarness(messaging_settings(), now=T0, max_attempts=3, backoff_s=2.0)
