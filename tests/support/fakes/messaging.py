"""``MessagingStore`` in memory, with the SQL's semantics (no locking); passes tests/contract.

Also providers that accept, fail, refuse or "crash" on demand (one that can tell what it
accepted), and the handler harness with messaging's sender beside it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.messaging.delivery import DeliveryRecorded, MessageRef, ReportedSend
from services.messaging.domain import (
    REARMABLE_CANCEL_REASON,
    Cancelled,
    ClaimedSend,
    Deferred,
    Failed,
    Released,
    Send,
    SendKey,
    Sent,
    WorkflowStep,
)
from services.messaging.parking import ParkedFailed, ParkedStep, VersionKey
from services.messaging.ports import StepKey
from services.messaging.projection import EnrollmentKey, EnrollmentView
from services.messaging.sms_balance import Movement, Reservation, State
from services.messaging.sms_balance import StepKey as SmsStepKey
from services.messaging.stopping import UNSTARTED, QueuedStep, Stopped
from shared.contracts.events import CancelReason, FailureKind
from shared.contracts.inbound import Channel
from shared.contracts.sms_balance import WhenShort
from tests.support.fakes.messaging_balance import FakeSmsBalance
from tests.support.fakes.messaging_limits import FakeSendLimits


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
    claimed_until: datetime | None = None
    failure_kind: FailureKind | None = None
    renewal_asked_for: datetime | None = None
    delivery: DeliveryRecorded | None = None

    def holds(self, send: Send) -> bool:
        """Whether the row still holds the attempt ``send`` was decided on."""
        return self.send.attempt_id == send.attempt_id

    def awaits_renewal(self, now: datetime) -> bool:
        """Its grant lapsed, a renewal was asked for and has not come."""
        lease = self.send.lease_until
        return lease is not None and lease <= now and self.renewal_asked_for == lease


@dataclass
class ParkedRow:
    """A ``sends`` row in status ``parked`` (no content yet), or failed while parked."""

    parked: ParkedStep
    status: str = "parked"
    failure_kind: FailureKind | None = None
    last_error: str | None = None
    cancel_reason: CancelReason | None = None


@dataclass
class FakeMessagingStore(FakeSendLimits, FakeSmsBalance):
    steps: dict[StepKey, WorkflowStep] = field(default_factory=dict)
    enrollments: dict[EnrollmentKey, EnrollmentView] = field(default_factory=dict)
    sends: dict[SendKey, SendRow] = field(default_factory=dict)
    parked: dict[SendKey, ParkedRow] = field(default_factory=dict)
    """The rows of ``sends`` that were parked: a key is in ``sends`` or here, never both."""
    wakeups: int = 0
    """NOTIFYs sent (a run wakes the senders once, one message at a time once each)."""
    calls: list[str] = field(default_factory=list)
    """Method names in call order: one call stands for one SQL statement (NOTIFY apart:
    ``wakeups`` counts those)."""
    quotas: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    """Send limits' quota rows: a limited sender -> until when it is full."""
    usage: dict[tuple[str, str], dict[uuid.UUID, datetime]] = field(default_factory=dict)
    """Send limits' ledger: a sender -> the attempts counted against it, when."""
    balances: dict[str, tuple[int, WhenShort]] = field(default_factory=dict)
    """SMS balances of metered accounts: balance and what a short step does."""
    reservations: dict[SmsStepKey, Reservation] = field(default_factory=dict)
    ledger: list[Movement] = field(default_factory=list)

    def snapshot(self) -> object:
        return (
            dict(self.steps),
            dict(self.enrollments),
            copy.deepcopy(self.sends),
            copy.deepcopy(self.parked),
            copy.deepcopy(self.quotas),
            copy.deepcopy(self.usage),
            self.balance_snapshot(),
        )

    # --- the consumer side ---

    async def save_workflow_steps(self, steps: Sequence[WorkflowStep]) -> None:
        self.calls.append("save_workflow_steps")
        for step in steps:  # ON CONFLICT DO NOTHING
            key = (step.account_id, step.workflow_id, step.version, step.step_index)
            self.steps.setdefault(key, step)

    async def workflow_steps(self, keys: Collection[StepKey]) -> dict[StepKey, WorkflowStep]:
        self.calls.append("workflow_steps")
        return {key: self.steps[key] for key in keys if key in self.steps}

    async def known_versions(self, versions: Collection[VersionKey]) -> set[VersionKey]:
        self.calls.append("known_versions")
        return {key[:3] for key in self.steps if key[:3] in versions}

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
            else:  # ON CONFLICT DO UPDATE SET status, recipient_email, recipient_phone
                self.enrollments[enrollment.key] = replace(
                    known,
                    status=enrollment.status,
                    recipient_email=enrollment.recipient_email,
                    recipient_phone=enrollment.recipient_phone,
                )

    async def add_pending_sends(self, sends: Sequence[Send], *, now: datetime) -> set[SendKey]:
        self.calls.append("add_pending_sends")
        keys = [send.key for send in sends]
        assert len(set(keys)) == len(keys), "one statement can touch a row only once"
        changed: set[SendKey] = set()
        for key, send in zip(keys, sends, strict=True):
            parked = self.parked.get(key)
            if parked is not None:  # DO UPDATE ... WHERE parked (the content arrives)
                if parked.status == "parked":
                    del self.parked[key]
                    grant = _later(parked.parked, send)
                    content = replace(send, dispatch_id=grant[0], lease_until=grant[1])
                    self.sends[key] = SendRow(replace(content, attempts=0), now, created_at=now)
                    changed.add(key)
                continue
            row = self.sends.get(key)
            if row is None:
                self.sends[key] = SendRow(replace(send, attempts=0), now, created_at=now)
                changed.add(key)
            elif self._paused(row):  # DO UPDATE ... WHERE cancelled for a pause
                row.status, row.cancel_reason, row.next_attempt_at = "pending", None, now
                row.renewal_asked_for = None
                row.send = replace(
                    row.send,
                    first_failed_at=None,
                    dispatch_id=send.dispatch_id,
                    lease_until=send.lease_until,
                )
                changed.add(key)
            elif row.status in ("pending", "sending") and _renews(row.send, send):
                row.send = replace(
                    row.send, dispatch_id=send.dispatch_id, lease_until=send.lease_until
                )
                changed.add(key)
        return changed

    async def queued_of(self, keys: Collection[EnrollmentKey]) -> dict[SendKey, QueuedStep]:
        self.calls.append("queued_of")
        queued = {
            key: _queued(row.send, row.status) for key, row in self.sends.items() if key[:2] in keys
        }
        return queued | {
            key: _queued(row.parked, row.status)
            for key, row in self.parked.items()
            if key[:2] in keys
        }

    async def stop_unsent(self, stopped: Sequence[Stopped]) -> set[SendKey]:
        self.calls.append("stop_unsent")
        done: set[SendKey] = set()
        for item in stopped:
            key = item.step.key
            row: SendRow | ParkedRow | None = self.sends.get(key) or self.parked.get(key)
            if row is not None and row.status in UNSTARTED:
                row.status, row.cancel_reason = "cancelled", item.reason
                if isinstance(row, SendRow):
                    row.claimed_until = None
                done.add(key)
        return done

    async def park_steps(self, parked: Sequence[ParkedStep]) -> set[SendKey]:
        self.calls.append("park_steps")
        assert len({p.key for p in parked}) == len(parked), "one statement, one row once"
        done: set[SendKey] = set()
        for step in parked:
            row = self.parked.get(step.key)
            if step.key not in self.sends and row is None:
                self.parked[step.key] = ParkedRow(step)
                done.add(step.key)
            elif row is not None and row.status == "parked" and _renews(row.parked, step):
                row.parked = replace(
                    row.parked, dispatch_id=step.dispatch_id, lease_until=step.lease_until
                )
                done.add(step.key)
        return done

    async def parked_of(self, versions: Collection[VersionKey]) -> list[ParkedStep]:
        self.calls.append("parked_of")
        return [
            row.parked
            for key, row in sorted(self.parked.items())
            if row.status == "parked" and row.parked.version in versions
        ]

    async def fail_parked(self, failed: Sequence[ParkedFailed]) -> None:
        self.calls.append("fail_parked")
        for item in failed:
            row = self.parked.get(item.parked.key)
            if row is not None and row.status == "parked":
                row.status, row.failure_kind, row.last_error = "failed", item.kind, item.reason

    async def wake_senders(self) -> None:
        self.wakeups += 1

    @staticmethod
    def _paused(row: SendRow) -> bool:
        return row.status == "cancelled" and row.cancel_reason is REARMABLE_CANCEL_REASON

    # --- the sender side ---

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        self.calls.append("claim_due")
        due = sorted(
            (
                row
                for key, row in self.sends.items()
                if (
                    (row.status == "pending" and row.next_attempt_at <= now)
                    or (
                        row.status == "sending"
                        and row.claimed_until is not None
                        and row.claimed_until <= now
                    )
                )
                and not row.awaits_renewal(now)
                and not self.blocked(row, now)
                and key[:2] in self.enrollments  # the inner join
                and not (
                    self._unreserved(row)
                    and self.reservation_state(key) is State.SHORT
                    and self.balances[key[0]][1] is WhenShort.WAIT
                )
            ),
            key=lambda row: row.next_attempt_at,
        )[:limit]
        claimed = []
        for row in due:
            enrollment = self.enrollments[row.send.key[:2]]
            claimed.append(
                ClaimedSend(
                    row.send,
                    enrollment.status,
                    enrollment.recipient_email,
                    after_crash=row.status == "sending",
                    due_at=row.next_attempt_at,
                    recipient_phone=enrollment.recipient_phone,
                    unreserved=self._unreserved(row),
                )
            )
        return claimed

    def _unreserved(self, row: SendRow) -> bool:
        """An SMS of a metered account, pending, whose segments are not reserved."""
        send = row.send
        return (
            row.status == "pending"
            and send.channel is Channel.SMS
            and send.account_id in self.balances
            and self.reservation_state(send.key) is not State.RESERVED
        )

    async def mark_sending(self, sends: Sequence[Send], *, until: datetime) -> None:
        self.calls.append("mark_sending")
        for send in sends:
            row = self.sends[send.key]
            if row.status not in ("pending", "sending"):
                continue
            row.status, row.claimed_until = "sending", until
            row.send = replace(row.send, attempt_id=send.attempt_id)

    async def mark_sent(self, sent: Sequence[Sent]) -> set[SendKey]:
        self.calls.append("mark_sent")
        done: set[SendKey] = set()
        for item in sent:
            row = self.sends.get(item.send.key)
            if row is None or row.status != "sending" or not row.holds(item.send):
                continue
            row.status, row.recipient, row.sent_at = "sent", item.recipient, item.sent_at
            row.send = replace(row.send, attempts=row.send.attempts + 1)
            row.last_error, row.claimed_until = None, None
            done.add(item.send.key)
        return done

    async def mark_cancelled(self, cancelled: Sequence[Cancelled]) -> set[SendKey]:
        self.calls.append("mark_cancelled")
        done: set[SendKey] = set()
        for item in cancelled:
            row = self.sends.get(item.send.key)
            if row is None or row.status not in ("pending", "sending"):
                continue
            if not row.holds(item.send):
                continue
            row.status, row.cancel_reason, row.claimed_until = "cancelled", item.reason, None
            done.add(item.send.key)
        return done

    async def record_failures(self, failures: Sequence[Failed]) -> set[SendKey]:
        self.calls.append("record_failures")
        done: set[SendKey] = set()
        for item in failures:
            row = self.sends.get(item.send.key)
            if row is None or row.status != "sending" or not row.holds(item.send):
                continue
            row.send = replace(
                row.send,
                attempts=row.send.attempts + 1,
                first_failed_at=row.send.first_failed_at or item.failed_at,
                attempt_id=None,
            )
            row.last_error, row.failure_kind, row.claimed_until = item.error, item.kind, None
            if item.retry_at is None:
                row.status = "failed"
            else:
                row.status, row.next_attempt_at = "pending", item.retry_at
            done.add(item.send.key)
        return done

    async def defer(self, deferred: Sequence[Deferred], *, now: datetime) -> set[SendKey]:
        self.calls.append("defer")
        asked: set[SendKey] = set()
        for item in deferred:
            row = self.sends.get(item.send.key)
            if row is None or row.status not in ("pending", "sending"):
                continue
            if not row.holds(item.send):
                continue
            if item.after_crash:
                row.status, row.claimed_until = "sending", now
            else:
                row.status, row.claimed_until = "pending", None
                row.send = replace(row.send, attempt_id=None)
            if row.send.lease_until == item.grant.lease_until:
                row.renewal_asked_for = item.grant.lease_until
                asked.add(item.send.key)
        return asked

    async def release(self, released: Sequence[Released], *, now: datetime) -> None:
        self.calls.append("release")
        for item in released:
            row = self.sends.get(item.send.key)
            if row is None or row.status != "sending" or not row.holds(item.send):
                continue
            if item.after_crash:
                row.claimed_until = now
            else:
                row.status, row.claimed_until = "pending", None
                row.send = replace(row.send, attempt_id=None)

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

    async def parked_before(self, before: datetime, *, limit: int) -> list[ParkedStep]:
        self.calls.append("parked_before")
        waiting = [
            row.parked
            for row in self.parked.values()
            if row.status == "parked" and row.parked.parked_at < before
        ]
        return sorted(waiting, key=lambda parked: parked.parked_at)[:limit]

    # --- delivery-status reports ---

    async def sends_reported(self, refs: Collection[MessageRef]) -> dict[MessageRef, ReportedSend]:
        self.calls.append("sends_reported")
        found = {}
        for row in self.sends.values():
            ref = (row.send.account_id, row.send.provider_message_id)
            if ref in refs:
                delivery = row.delivery
                found[ref] = ReportedSend(
                    row.send,
                    row.status,
                    delivery.status if delivery else None,
                    delivery.reported_at if delivery else None,
                )
        return found

    async def record_deliveries(self, recorded: Sequence[DeliveryRecorded]) -> None:
        self.calls.append("record_deliveries")
        for report in recorded:
            self.sends[report.key].delivery = report


Granted = Send | ParkedStep


def _renews(held: Granted, new: Granted) -> bool:
    """Whether ``new``'s grant replaces the one ``held`` (its lease is later)."""
    if new.lease_until is None:
        return False
    return held.lease_until is None or new.lease_until > held.lease_until


def _later(held: Granted, new: Granted) -> tuple[uuid.UUID | None, datetime | None]:
    """The grant a parked row keeps when its content arrives with ``new``'s grant."""
    if held.lease_until is None or _renews(held, new):
        return new.dispatch_id, new.lease_until
    return held.dispatch_id, held.lease_until


def _queued(step: Granted, status: str) -> QueuedStep:
    return QueuedStep(
        account_id=step.account_id,
        enrollment_id=step.enrollment_id,
        step_index=step.step_index,
        workflow_id=step.workflow_id,
        workflow_version=step.workflow_version,
        record=step.record,
        step_id=step.step_id,
        channel=step.channel,
        status=status,
        dispatch_id=step.dispatch_id,
        cause_message_id=step.cause_message_id,
        correlation_id=step.correlation_id,
    )
