"""Enrolls that waited too long for their workflow: the loop that rejects them.

An ``enrollment.enroll`` read before its workflow's ``workflow.apply`` (keyed apart, so
either may come first) is parked by the handler and enrolled by the apply, in the apply's
transaction. One whose workflow is still not applied after ``OFFRAMP_PARK_MAX_S`` is
decided by this loop, as it would have been at once: rejected with ``unknown_workflow``.
A loop rather than the next command for that workflow, so that an enroll whose workflow
is never applied is answered anyway. Replicas share the work (``SKIP LOCKED``), and the
rejection commits with the removal, through the outbox.

The same loop releases the enrolls that waited for their workflow's daily cap
(``caps``): once their day starts, oldest first (``release_round``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.enrollment.admission import admit
from services.enrollment.config import EnrollmentSettings
from services.enrollment.ports import EnrollmentStore
from shared.logging import get_logger
from shared.uow import UnitOfWork

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)

BATCH = 500


async def expire_round(
    uow: UnitOfWork[EnrollmentStore], *, now: datetime, max_wait_s: float, limit: int = BATCH
) -> int:
    """Decide up to ``limit`` enrolls parked longer than ``max_wait_s``; returns how many."""
    expired = await uow.store.take_expired_parked(
        parked_before=now - timedelta(seconds=max_wait_s), limit=limit
    )
    await admit(uow, expired, now)
    return len(expired)


async def release_round(
    uow: UnitOfWork[EnrollmentStore], *, now: datetime, limit: int = BATCH
) -> int:
    """Decide up to ``limit`` enrolls whose wait for their workflow's daily cap is over,
    oldest first (those the day cannot take wait again); returns how many."""
    released = await uow.store.take_released(now=now, limit=limit)
    await admit(
        uow, [c for c, _ in released], now, arrived={c.message_id: at for c, at in released}
    )
    return len(released)


@dataclass(slots=True)
class ParkingStats:
    expired: int = 0
    failed_rounds: int = 0
    last_round_monotonic: float = 0.0


class ParkedEnrolls:
    """Rejects enrolls parked too long, until the service stops (supervised)."""

    def __init__(self, runtime: ServiceRuntime[EnrollmentSettings, EnrollmentStore]) -> None:
        self._runtime = runtime
        self.stats = ParkingStats()

    async def expire_once(self) -> int:
        runtime = self._runtime
        async with runtime.begin() as uow:
            expired = await expire_round(
                uow, now=runtime.clock(), max_wait_s=runtime.settings.park_max_s
            )
        if expired:
            log.info("parked_enrolls_expired", count=expired)
        async with runtime.begin() as uow:
            released = await release_round(uow, now=runtime.clock())
        if released:
            log.info("capped_enrolls_released", count=released)
        return expired + released

    async def run(self) -> None:
        stopping = self._runtime.stopping
        while not stopping.is_set():
            try:
                expired = await self.expire_once()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                self.stats.failed_rounds += 1
                log.warning("parked_enrolls_loop_error", error=repr(exc))
                expired = 0
            self.stats.expired += expired
            self.stats.last_round_monotonic = time.monotonic()
            if expired < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._runtime.settings.park_sweep_s)
