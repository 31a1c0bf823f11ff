"""The sender's housekeeping besides its rounds (``sender_loop`` runs them): sends whose
enrollment never arrived are cancelled, steps parked too long are failed; with the
counters every part of the sender keeps (``SenderStats``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.messaging import balance, domain, messages, parking
from services.messaging.ports import MessagingStore
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)


@dataclass(slots=True)
class SenderStats:
    sent: int = 0
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    sends_resent_after_crash: int = 0
    """Sends found ``sending`` after a crash and given to a provider that cannot tell
    whether it accepted them already: possibly delivered twice (same Message-ID)."""
    sends_resolved_after_crash: int = 0
    """Sends found ``sending`` after a crash that the provider said it had accepted:
    marked sent without sending."""
    parked_expired: int = 0
    deferred: int = 0
    """Sends whose grant lapsed before a call started: ``message.deferred`` published."""
    calls_not_started_lease_lapsed: int = 0
    """Claimed sends whose grant lapsed between the claim and the provider call."""
    stale_outcomes: int = 0
    """Outcomes not recorded because the send's attempt had lost its lease meanwhile."""
    waited_for_limit: int = 0
    """Claims of a send left waiting because its sender had reached its send limit."""
    last_tick_monotonic: float = 0.0


class Housekeeping:
    """``Sender``'s timed passes; it sets the attributes below."""

    claim_limit: int
    stats: SenderStats
    _orphan_grace: timedelta
    _park_max_s: float

    async def cancel_orphans(self, uow: UnitOfWork[MessagingStore], *, now: datetime) -> int:
        """Cancel sends whose enrollment never arrived within the grace period."""
        orphans = await uow.store.cancel_orphans(
            created_before=now - self._orphan_grace, limit=self.claim_limit
        )
        for send in orphans:
            uow.publish(messages.message_cancelled(domain.orphaned(send)))
            log.warning(
                "send_cancelled_enrollment_unknown",
                enrollment_id=str(send.enrollment_id),
                step_index=send.step_index,
                account_id=send.account_id,
            )
        self.stats.cancelled += len(orphans)
        await balance.settle_outcomes(uow, now=now, cancelled=orphans)
        return len(orphans)

    async def expire_parked(self, uow: UnitOfWork[MessagingStore], *, now: datetime) -> int:
        """Fail steps that waited longer than ``park_max_s`` for their workflow version."""
        before = parking.expires_before(now, max_age_s=self._park_max_s)
        expired = await uow.store.parked_before(before, limit=self.claim_limit)
        failed = [parking.never_arrived(p, now=now, max_age_s=self._park_max_s) for p in expired]
        await uow.store.fail_parked(failed)
        await balance.refund_failed_parked(uow, failed, now)
        for failure in failed:
            uow.publish(messages.message_failed(failure))
            log.error(
                "parked_step_expired",
                enrollment_id=str(failure.parked.enrollment_id),
                step_index=failure.parked.step_index,
                account_id=failure.parked.account_id,
                reason=failure.reason,
            )
        self.stats.parked_expired += len(failed)
        return len(failed)
