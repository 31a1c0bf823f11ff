"""What the handlers and the sender need from storage.

``repository.MessagingRepository`` implements both ports over one connection; tests use
in-memory fakes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.messaging.domain import (
    ClaimedSend,
    EnrollmentKey,
    EnrollmentView,
    Send,
    SendKey,
    WorkflowStep,
)
from shared.contracts.events import CancelReason

StepKey = tuple[str, str, int, int]
"""(account id, workflow id, version, step index): one step of one workflow version."""


class MessagingStore(Protocol):
    """Storage of the consumer side: projections and the queue of pending sends.

    Every method takes a whole run of messages' worth of rows and costs one statement.
    """

    async def save_workflow_steps(self, steps: Sequence[WorkflowStep]) -> None:
        """Keep the steps of workflow versions (versions never change once applied)."""
        ...

    async def workflow_steps(self, keys: Collection[StepKey]) -> dict[StepKey, WorkflowStep]:
        """Those of the steps named by ``keys`` that were applied."""
        ...

    async def enrollments_for_update(
        self, keys: Collection[EnrollmentKey]
    ) -> dict[EnrollmentKey, EnrollmentView]:
        """The projected enrollments among ``keys``, locked until the transaction ends."""
        ...

    async def save_enrollments(self, enrollments: Sequence[EnrollmentView]) -> None:
        """Insert or update projection rows (one per enrollment), as the domain decided."""
        ...

    async def add_pending_sends(self, sends: Sequence[Send], *, now: datetime) -> set[SendKey]:
        """Queue ``sends`` (one per (account, enrollment, step)), due at ``now``; returns the
        keys of those queued, leaving out steps that already have a send."""
        ...

    async def rearm_paused_sends(self, keys: Collection[EnrollmentKey], *, now: datetime) -> int:
        """Queue again the sends cancelled only because the enrollment was paused."""
        ...

    async def wake_senders(self) -> None:
        """Wake every sender loop once this transaction commits."""
        ...


StoreFactory = Callable[[Any], MessagingStore]
"""Builds a store over the unit of work's connection."""


@dataclass(frozen=True, slots=True)
class SentSend:
    account_id: str
    enrollment_id: uuid.UUID
    step_index: int
    recipient: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class CancelledSend:
    account_id: str
    enrollment_id: uuid.UUID
    step_index: int
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    account_id: str
    enrollment_id: uuid.UUID
    step_index: int
    error: str
    retry_at: datetime | None
    """None: the last attempt failed and the send is marked failed."""


class SendQueue(Protocol):
    """Storage of the sender loop. Everything happens in the caller's one transaction."""

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        """Lock up to ``limit`` due pending sends and share-lock their enrollments.

        Rows another transaction holds are skipped, never waited for.
        """
        ...

    async def mark_sent(self, sent: Sequence[SentSend]) -> None: ...

    async def mark_cancelled(self, cancelled: Sequence[CancelledSend]) -> None: ...

    async def record_failures(self, failures: Sequence[FailedAttempt]) -> None: ...

    async def cancel_orphans(self, *, created_before: datetime, limit: int) -> list[Send]:
        """Cancel pending sends whose enrollment was never projected; returns them."""
        ...
