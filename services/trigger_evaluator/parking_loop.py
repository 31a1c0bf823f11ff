"""The parking loop: evaluates parked events again when their check is due, and releases
the ones that waited ``OFFRAMP_PARK_MAX_S`` for nothing (decided as matching nothing and
dead-lettered with the reason, so ``offramp deadletters replay`` can bring them back).

Any number of replicas run it side by side: ``FOR UPDATE SKIP LOCKED`` gives each due
event to one of them, and the decisions, the exits and the dead letters commit together.
Nothing here sleeps in the consume loop: the consumer only ever parks and unparks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.trigger_evaluator.config import TriggerEvaluatorSettings
from services.trigger_evaluator.handlers import TriggerHandlers
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from shared import inbox
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)

CHECK_INTERVAL_S = 1.0
"""How often due checks and expiries are looked for when none is due (one indexed query)."""
BATCH_SIZE = 500
"""Parked events checked per transaction (more are checked at once after)."""


@dataclass(slots=True)
class ParkingStats:
    checked: int = 0
    released: int = 0
    failed_rounds: int = 0
    last_round_monotonic: float = 0.0


class ParkingLoop:
    """Checks and releases parked events until the service stops (supervised)."""

    def __init__(
        self, runtime: ServiceRuntime[TriggerEvaluatorSettings, TriggerEvaluatorStore]
    ) -> None:
        self._runtime = runtime
        self._handlers = TriggerHandlers.of(runtime.settings)
        self.stats = ParkingStats()

    async def check_once(self) -> int:
        """Check one batch of due parked events; returns how many were due."""
        runtime = self._runtime
        now = runtime.clock()
        async with runtime.begin() as uow:
            due, released = await self._handlers.check_parked(uow, now, BATCH_SIZE)
            for event in released:
                # A replay of the dead letter must apply the event again: the inbox
                # remembers it as dead-lettered, not as applied.
                await inbox.set_outcome(
                    uow.conn,
                    consumer=runtime.group_id,
                    account_id=event.account_id,
                    message_id=str(event.event.message_id),
                    outcome="dead_lettered",
                )
        self.stats.checked += due
        self.stats.released += len(released)
        return due

    async def run(self) -> None:
        stopping = self._runtime.stopping
        while not stopping.is_set():
            try:
                due = await self.check_once()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                self.stats.failed_rounds += 1
                log.warning("parking_loop_error", error=repr(exc))
                due = 0
            self.stats.last_round_monotonic = time.monotonic()
            if due < BATCH_SIZE:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), CHECK_INTERVAL_S)
