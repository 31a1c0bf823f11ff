"""The due-timer loop: fires due timers and publishes ``step.due`` via the outbox, and
ends timed pauses with ``enrollment.resume`` the same way.

Any number of scheduler replicas run it side by side: ``FOR UPDATE SKIP LOCKED`` gives
each due timer to exactly one of them, and firing and publishing commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from services.scheduler import messages
from services.scheduler.config import SchedulerSettings
from services.scheduler.ports import SchedulerStore
from shared.logging import get_logger
from shared.uow import UnitOfWork

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)


@dataclass(slots=True)
class TimerStats:
    fired: int = 0
    """Step timers and resume timers fired."""
    resumed: int = 0
    """Of them, timed pauses ended."""
    failed_rounds: int = 0
    last_tick_monotonic: float = 0.0


async def fire_round(
    uow: UnitOfWork[SchedulerStore], *, now: datetime, limit: int
) -> tuple[int, int]:
    """Fire up to ``limit`` due step timers and as many due resumes, and publish their
    ``step.due`` and ``enrollment.resume``; returns (steps, resumes)."""
    fired = await uow.store.fire_due(now=now, limit=limit)
    for timer in fired:
        uow.publish(messages.step_due(timer))
    resumed = await uow.store.fire_due_resumes(now=now, limit=limit)
    for pause in resumed:
        uow.publish(messages.resume(pause))
    return len(fired), len(resumed)


class DueTimers:
    """Fires due timers until the service stops (supervised by the runtime)."""

    def __init__(self, runtime: ServiceRuntime[SchedulerSettings, SchedulerStore]) -> None:
        self._runtime = runtime
        self.stats = TimerStats()

    async def fire_once(self) -> int:
        """Fire one batch of due step timers and one of due resumes; returns how many of
        both (a full batch of either: go on at once)."""
        runtime = self._runtime
        async with runtime.begin() as uow:
            steps, resumed = await fire_round(
                uow, now=runtime.clock(), limit=runtime.settings.scheduler_batch_size
            )
        if resumed:
            log.info("timed_pauses_ended", count=resumed)
        self.stats.resumed += resumed
        return steps + resumed

    async def run(self) -> None:
        settings = self._runtime.settings
        stopping = self._runtime.stopping
        while not stopping.is_set():
            try:
                fired = await self.fire_once()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                self.stats.failed_rounds += 1
                log.warning("due_timer_loop_error", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 1.0)
                continue
            self.stats.fired += fired
            self.stats.last_tick_monotonic = time.monotonic()
            if fired:
                log.debug("timers_fired", count=fired)
            if fired < settings.scheduler_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), settings.scheduler_tick_s)
