"""What messaging needs from storage: the ``MessagingStore`` port.

``repository.PostgresMessagingStore`` is the real one; ``tests/support/fakes`` holds an
in-memory one that passes the same contract suite (``tests/contract``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from services.messaging.domain import (
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

StepKey = tuple[str, str, int, int]
"""(account id, workflow id, version, step index): one step of one workflow version."""


class MessagingStore(Protocol):
    """The projections and the queue of sends, in the unit of work's transaction.

    Every method takes a whole run of messages' (or a claim's) worth of rows and costs one
    statement, however many rows there are.
    """

    # --- the consumer side: projections and queueing ---

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
        keys of those queued, leaving out steps that already have a send (except one
        cancelled for a pause, which is queued again)."""
        ...

    async def rearm_paused_sends(self, keys: Collection[EnrollmentKey], *, now: datetime) -> int:
        """Queue again the sends cancelled only because the enrollment was paused."""
        ...

    async def wake_senders(self) -> None:
        """Wake every sender loop once this transaction commits."""
        ...

    # --- the sender side: the send queue ---

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        """Lock up to ``limit`` due pending sends, earliest first, and share-lock their
        enrollments; a send whose enrollment is not projected yet is left for later.

        Rows another transaction holds are skipped, never waited for.
        """
        ...

    async def mark_sent(self, sent: Sequence[Sent]) -> None:
        """Record accepted sends with their recipient and time."""
        ...

    async def mark_cancelled(self, cancelled: Sequence[Cancelled]) -> None:
        """Record sends the re-check stopped, with the reason."""
        ...

    async def record_failures(self, failures: Sequence[Failed]) -> None:
        """Count failed attempts; a send with no retry left becomes ``failed``."""
        ...

    async def cancel_orphans(self, *, created_before: datetime, limit: int) -> list[Send]:
        """Cancel pending sends queued before ``created_before`` whose enrollment was never
        projected; returns them."""
        ...
