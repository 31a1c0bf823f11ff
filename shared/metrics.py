"""``/metrics``: the service's own counters in Prometheus's text format.

Counters come from the pipeline, the outbox relay and the loop supervisor of this
process; the outbox backlog and the quarantine are read from the service's schema, so
every replica reports the same numbers for them. FastStream's middleware would count
handler calls; the pipeline's batches, duplicates and dead letters are what operators
need, and consumer lag is read from Kafka (see README, Running it in production).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    pending: float
    oldest_age_s: float
    quarantined: float


async def outbox_backlog(runtime: ServiceRuntime[Any, Any]) -> OutboxBacklog | None:
    """What waits in this service's outbox and quarantine; None when the database is away."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2), runtime.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM outbox) AS pending,
                          (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)
                           FROM outbox) AS oldest,
                          (SELECT count(*) FROM outbox_quarantine) AS quarantined"""
            )
            if row is not None:
                return OutboxBacklog(
                    float(row["pending"]), float(row["oldest"]), float(row["quarantined"])
                )
    return None


class _Snapshot(Collector):
    def __init__(self, runtime: ServiceRuntime[Any, Any], backlog: OutboxBacklog | None) -> None:
        self._runtime = runtime
        self._backlog = backlog

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        service = runtime.spec.name

        def counter(name: str, text: str, value: float) -> Metric:
            family = CounterMetricFamily(f"offramp_{name}", text, labels=["service"])
            family.add_metric([service], value)
            return family

        def gauge(name: str, text: str, value: float) -> Metric:
            family = GaugeMetricFamily(f"offramp_{name}", text, labels=["service"])
            family.add_metric([service], value)
            return family

        if runtime.pipeline is not None:
            stats = runtime.pipeline.stats
            yield counter("consumer_batches", "Batches applied and committed.", stats.batches)
            yield counter("consumer_messages", "Messages in applied batches.", stats.messages)
            yield counter("consumer_duplicates", "Messages already applied.", stats.duplicates)
            yield counter("consumer_dead_lettered", "Messages dead-lettered.", stats.dead_lettered)
            yield counter(
                "consumer_unknown_types", "Messages of unknown type.", stats.unknown_types
            )
            yield counter(
                "consumer_batches_given_back",
                "Batches given back to Kafka because the database failed.",
                stats.database_unavailable,
            )
            yield gauge(
                "consumer_failing_batches_in_a_row",
                "Batches given back in a row; 0 once one lands.",
                stats.consecutive_failures,
            )
        relay = runtime.relay
        if relay is not None:
            yield counter(
                "outbox_relayed", "Outbox rows published by this process.", relay.stats.relayed
            )
            yield counter(
                "outbox_quarantined",
                "Outbox rows this process moved to the quarantine.",
                relay.stats.quarantined,
            )
            yield gauge(
                "outbox_relay_failing_rounds_in_a_row",
                "Relay rounds in a row that published nothing because of an error.",
                relay.stats.consecutive_failures,
            )
            yield gauge(
                "outbox_relay_leader", "1 when this process relays.", float(relay.is_leader)
            )
        if self._backlog is not None:
            yield gauge("outbox_pending_rows", "Rows waiting in the outbox.", self._backlog.pending)
            yield gauge(
                "outbox_oldest_row_age_seconds",
                "Age of the oldest row waiting in the outbox.",
                self._backlog.oldest_age_s,
            )
            yield gauge(
                "outbox_quarantined_rows",
                "Rows in the outbox quarantine (see `offramp quarantine list`).",
                self._backlog.quarantined,
            )
        restarts = CounterMetricFamily(
            "offramp_background_loop_restarts",
            "Restarts of a background loop after it failed or ended.",
            labels=["service", "loop"],
        )
        for loop, count in sorted(runtime.loop_restarts.items()):
            restarts.add_metric([service, loop], count)
        yield restarts
        yield _loop_stats(service, runtime)
        for background in runtime.loops.values():
            # A loop may report gauges of its own (messaging's sender: the queue per sender).
            families = getattr(background, "metric_families", None)
            if callable(families):
                yield from families(service)
        yield gauge(
            "background_loops_failed",
            "Background loops given up; the process is not alive.",
            len(runtime.failed_loops),
        )


def _loop_stats(service: str, runtime: ServiceRuntime[Any, Any]) -> Metric:
    """Every whole number a background loop's stats hold (what ``/readyz`` shows), e.g.
    the sender's ``sent``, ``failed`` and ``sends_resent_after_crash``."""
    family = GaugeMetricFamily(
        "offramp_background_loop_stat",
        "A number a background loop keeps in its stats since this process started.",
        labels=["service", "loop", "stat"],
    )
    for name, loop in sorted(runtime.loops.items()):
        stats = loop.stats
        if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
            continue
        for field in dataclasses.fields(stats):
            value = getattr(stats, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                family.add_metric([service, name, field.name], value)
    return family


async def render(runtime: ServiceRuntime[Any, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(runtime, await outbox_backlog(runtime)))
    return generate_latest(registry)
