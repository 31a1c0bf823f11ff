"""The sender loop: one ``Sender`` round as soon as a send is queued (NOTIFY) or every
poll, the orphan and parked-step passes and a reading of the queue per sender (gauges on
/metrics) every ten polls; supervised by the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from services.messaging.config import MessagingSettings
from services.messaging.ports import MessagingStore
from services.messaging.send_limits import SenderQueue
from services.messaging.sender import Sender
from services.messaging.sender_housekeeping import SenderStats
from services.messaging.wakeups import Wakeup, listen
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)


class SenderLoop:
    """Sends due steps as soon as they are queued (NOTIFY) or every poll (supervised)."""

    def __init__(self, runtime: ServiceRuntime[MessagingSettings, MessagingStore]) -> None:
        self._runtime = runtime
        self._sender = Sender.from_settings(
            runtime.settings, clock=runtime.clock, stopping=runtime.stopping.is_set
        )
        self.queue: list[SenderQueue] = []
        """The queue per sender as last read (``offramp_sends_*`` gauges on /metrics)."""

    @property
    def stats(self) -> SenderStats:
        return self._sender.stats

    async def send_once(self, *, now: datetime) -> int:
        """One round of claimed sends; returns how many were claimed."""
        return await self._sender.process(self._runtime.begin, now=now)

    async def cancel_orphans_once(self, *, now: datetime) -> int:
        """One transaction cancelling sends whose enrollment never arrived."""
        async with self._runtime.begin() as uow:
            return await self._sender.cancel_orphans(uow, now=now)

    async def expire_parked_once(self, *, now: datetime) -> int:
        """One transaction failing steps whose workflow version never arrived."""
        async with self._runtime.begin() as uow:
            return await self._sender.expire_parked(uow, now=now)

    async def queue_once(self, *, now: datetime) -> list[SenderQueue]:
        """Read the queue per sender (for /metrics), and keep it until the next reading."""
        async with self._runtime.begin() as uow:
            self.queue = await uow.store.sends_queue(now=now)
        return self.queue

    def metric_families(self, service: str) -> Iterator[Metric]:
        """The queue per sender as of the last reading (every ten polls): gauges labelled
        by account and sender."""
        families = {
            "waiting": GaugeMetricFamily(
                "offramp_sends_waiting",
                "Sends pending per sender (due now or later), not yet handed to a provider.",
                labels=["service", "account", "sender"],
            ),
            "due": GaugeMetricFamily(
                "offramp_sends_due",
                "Of those, the sends already due (waiting for capacity or a sender round).",
                labels=["service", "account", "sender"],
            ),
            "used_24h": GaugeMetricFamily(
                "offramp_send_limit_used",
                "Provider calls counted against the sender's rolling 24-hour send limit.",
                labels=["service", "account", "sender"],
            ),
            "full": GaugeMetricFamily(
                "offramp_send_limit_full",
                "1 while the sender has reached its send limit (its sends wait), else 0.",
                labels=["service", "account", "sender"],
            ),
        }
        for q in self.queue:
            labels = [service, q.account_id, q.sender]
            families["waiting"].add_metric(labels, q.waiting)
            families["due"].add_metric(labels, q.due)
            families["used_24h"].add_metric(labels, q.used_24h)
            families["full"].add_metric(labels, 1 if q.blocked_until else 0)
        yield from families.values()

    async def run(self) -> None:
        settings = self._runtime.settings
        wakeup = Wakeup()
        listener = asyncio.create_task(
            listen(settings.database_url, wakeup, check_s=settings.send_poll_interval_s),
            name="messaging:sender-listen",
        )
        stopping = self._runtime.stopping
        # A stopping service wakes the sender at once; the round in hand commits first.
        stop_watch = asyncio.create_task(stopping.wait(), name="messaging:sender-stop")
        stop_watch.add_done_callback(lambda _task: wakeup.notify())
        next_orphan_check = 0.0
        try:
            while not stopping.is_set():
                now = self._runtime.clock()  # one reading per round
                try:
                    claimed = await self.send_once(now=now)
                    if time.monotonic() >= next_orphan_check:
                        await self.cancel_orphans_once(now=now)
                        await self.expire_parked_once(now=now)
                        await self.queue_once(now=now)
                        next_orphan_check = time.monotonic() + settings.send_poll_interval_s * 10
                except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                    log.warning("sender_loop_error", error=repr(exc))
                    await wakeup.wait(settings.send_poll_interval_s)
                    continue
                self.stats.last_tick_monotonic = time.monotonic()
                if claimed < self._sender.claim_limit:
                    await wakeup.wait(settings.send_poll_interval_s)
        finally:
            for task in (listener, stop_watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._sender.close()
