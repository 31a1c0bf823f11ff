"""What messaging needs from storage: the ``MessagingStore`` port.

``repository.PostgresMessagingStore`` is the real one; ``tests/support/fakes`` holds an
in-memory one that passes the same contract suite (``tests/contract``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from services.messaging.delivery import DeliveryRecorded, MessageRef, ReportedSend
from services.messaging.domain import (
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
from services.messaging.projection import EnrollmentKey, EnrollmentView
from services.messaging.send_limits import SenderKey, SenderQueue, SenderUsage
from services.messaging.sms_balance import Book
from services.messaging.sms_balance import StepKey as SmsStepKey
from services.messaging.stopping import QueuedStep, Stopped

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

    async def known_versions(self, versions: Collection[VersionKey]) -> set[VersionKey]:
        """Those of ``versions`` whose steps were saved."""
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
        """Queue ``sends`` (one per (account, enrollment, step)) under their grants, due at
        ``now``; returns the keys queued or whose grant changed.

        A step that already has a send: one parked is queued with this content; one
        cancelled for a pause is queued again under this grant; one pending or sending
        takes this grant when its lease is later (a renewal), nothing else changing; any
        other (sent, failed, cancelled for good, or a lease not later) is left alone."""
        ...

    async def park_steps(self, parked: Sequence[ParkedStep]) -> set[SendKey]:
        """Keep granted steps whose workflow version is not projected yet, as ``parked``
        sends without content; returns the keys parked, or still parked and given a later
        lease (a step that has another send already is left alone)."""
        ...

    async def parked_of(self, versions: Collection[VersionKey]) -> list[ParkedStep]:
        """The steps parked for ``versions``, locked until the transaction ends."""
        ...

    async def fail_parked(self, failed: Sequence[ParkedFailed]) -> None:
        """Record parked steps that will never be sent as ``failed``, with the reason."""
        ...

    async def queued_of(self, keys: Collection[EnrollmentKey]) -> dict[SendKey, QueuedStep]:
        """Every send of the enrollments ``keys``, whatever its status."""
        ...

    async def stop_unsent(self, stopped: Sequence[Stopped]) -> set[SendKey]:
        """Cancel the sends of ``stopped`` still ``pending`` or ``parked`` (no call was
        handed to a provider), with the reason; returns the keys cancelled (a claim that
        took one meanwhile keeps it: its outcome answers)."""
        ...

    async def wake_senders(self) -> None:
        """Wake every sender loop once this transaction commits."""
        ...

    # --- the sender side: the send queue ---

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        """Lock up to ``limit`` sends that are due (pending, next attempt at or before
        ``now``) or whose ``sending`` lease ran out by ``now`` (a crash: ``after_crash``),
        earliest first, and share-lock their enrollments; a send whose enrollment is not
        projected yet is left for later, and so is one whose grant's lease has lapsed and
        whose renewal was asked for and has not come (``defer``).

        Rows another transaction holds are skipped, never waited for.
        """
        ...

    async def mark_sending(self, sends: Sequence[Send], *, until: datetime) -> None:
        """Hand the claimed ``sends`` (locked by this transaction) to their new attempt
        (``attempt_id``) until ``until``: status ``sending``."""
        ...

    # Every outcome below applies only to a row that still holds the attempt it was decided
    # on (``Send.attempt_id``; none for a pending row) and is not finished; each returns the
    # keys it applied, so nothing is published for an attempt that lost its lease.

    async def mark_sent(self, sent: Sequence[Sent]) -> set[SendKey]:
        """Record accepted sends with their recipient and time."""
        ...

    async def mark_cancelled(self, cancelled: Sequence[Cancelled]) -> set[SendKey]:
        """Record sends the re-check stopped, with the reason."""
        ...

    async def record_failures(self, failures: Sequence[Failed]) -> set[SendKey]:
        """Count failed attempts: retried at ``retry_at`` (pending), or ``failed`` with its
        kind; the first failure of a run starts the retry budget's clock."""
        ...

    async def defer(self, deferred: Sequence[Deferred], *, now: datetime) -> set[SendKey]:
        """Give back sends whose grant lapsed before a call started, as ``release`` does,
        and mark each one's lapsed lease as asked to be renewed; returns the keys so marked
        (a send whose grant was renewed meanwhile is only given back: nothing to ask)."""
        ...

    async def release(self, released: Sequence[Released], *, now: datetime) -> None:
        """Give back claims whose provider call never started: pending again, or (a
        crash's send, still unresolved) ``sending`` with its lease run out at ``now``."""
        ...

    async def cancel_orphans(self, *, created_before: datetime, limit: int) -> list[Send]:
        """Cancel pending sends queued before ``created_before`` whose enrollment was never
        projected; returns them."""
        ...

    async def parked_before(self, before: datetime, *, limit: int) -> list[ParkedStep]:
        """Lock up to ``limit`` steps parked before ``before`` (SKIP LOCKED), oldest first."""
        ...

    # --- send limits (``send_limits``): quota rows locked by the claim, a usage ledger ---

    async def lock_senders(
        self, senders: Collection[SenderKey], *, claimed: Collection[SendKey], now: datetime
    ) -> dict[SenderKey, SenderUsage]:
        """Lock the quota rows of ``senders`` (creating them), waiting for another claim
        holding one; forget usage older than 24 hours; return each one's usage in the last
        24 hours and the due time of its oldest due, claimable send outside ``claimed``."""
        ...

    async def use_capacity(
        self,
        used: Sequence[tuple[SenderKey, uuid.UUID]],
        blocked: Mapping[SenderKey, datetime],
        *,
        now: datetime,
    ) -> None:
        """Count one call at ``now`` per (sender, attempt id); mark ``blocked`` senders
        full until their instant (``claim_due`` skips their sends until then)."""
        ...

    async def give_back_capacity(self, attempts: Sequence[tuple[SenderKey, uuid.UUID]]) -> None:
        """Uncount attempts that started no provider call; their senders are not full."""
        ...

    async def sends_queue(self, *, now: datetime) -> list[SenderQueue]:
        """Per account and sender: what waits, what is due, usage in 24 h, full until."""
        ...

    # --- delivery-status reports ---

    async def sends_reported(self, refs: Collection[MessageRef]) -> dict[MessageRef, ReportedSend]:
        """The sends that reports name by (account, provider_message_id), locked."""
        ...

    async def record_deliveries(self, recorded: Sequence[DeliveryRecorded]) -> None:
        """Store each send's latest delivery report."""
        ...

    # --- the SMS balance (``sms_balance``): balances locked by a run, reservations, ledger ---

    async def meter_accounts(self, accounts: Collection[str]) -> None:
        """Give ``accounts`` a balance of 0 if they have none (metered from now on)."""
        ...

    async def sms_books(
        self,
        accounts: Collection[str],
        *,
        steps: Collection[SmsStepKey] = (),
        enrollments: Collection[EnrollmentKey] = (),
        credit_ids: Collection[tuple[str, str]] = (),
        short: bool = False,
    ) -> dict[str, Book]:
        """The metered ones of ``accounts``, their balances locked until the transaction
        ends, with the reservations of ``steps`` and of ``enrollments`` (and, ``short``,
        every short one of theirs) and which of ``credit_ids`` were applied already."""
        ...

    async def save_sms_books(self, books: Sequence[Book]) -> None:
        """Save the balances, reservations and ledger movements the books changed."""
        ...

    async def sms_ledger_sum(self, account_id: str) -> tuple[int, int]:
        """(balance, sum of the ledger's deltas) of one account."""
        ...
