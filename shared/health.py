"""A tiny HTTP endpoint for Kubernetes probes: ``/healthz`` (alive) and ``/readyz``.

Alive means every background loop (outbox relay, timers, sender) runs or is being
restarted; a loop given up after crashing again and again makes the process not alive.
Ready means the database answers, the consumer runs and is not giving batches back in a
loop, no batch is stuck, and the outbox relay is not failing round after round.
FastStream's own ping cannot see a dead consumer, so this checks the service's own parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

from shared import metrics
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)

STUCK_AFTER_S = 120.0
"""A batch still in progress after this long makes the service unready."""

FAILING_AFTER = 2
"""Batches (or relay rounds) failed in a row that make the service unready."""


class HealthServer:
    def __init__(
        self,
        runtime: ServiceRuntime[Any, Any],
        *,
        port: int,
        host: str = "0.0.0.0",  # noqa: S104 - probes come from the kubelet
    ) -> None:
        self._runtime = runtime
        self._port = port
        self._host = host

    async def run(self) -> None:
        server = await asyncio.start_server(self._serve, self._host, self._port)
        async with server:
            await server.serve_forever()

    async def readiness(self) -> dict[str, object]:
        runtime = self._runtime
        checks: dict[str, object] = {"background": runtime.background_healthy()}
        try:
            async with asyncio.timeout(2):
                checks["database"] = await runtime.pool.fetchval("SELECT 1") == 1
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = repr(exc)
        checks["relay_leader"] = bool(runtime.relay and runtime.relay.is_leader)
        relay_failures = runtime.relay.stats.consecutive_failures if runtime.relay else 0
        checks["relay_failing"] = relay_failures >= FAILING_AFTER
        if runtime.relay is not None:
            checks["relay_quarantined"] = runtime.relay.stats.quarantined
        checks["loop_restarts"] = dict(runtime.loop_restarts)
        checks["loops"] = {name: _plain(loop.stats) for name, loop in runtime.loops.items()}
        # FastStream's own ping sees only the cluster; this sees our consumer: it must be
        # running, and no batch may have been stuck for longer than STUCK_AFTER_S.
        checks["consumer"] = all(sub.running for sub in runtime.broker.subscribers)
        if runtime.pipeline is not None:
            stats = runtime.pipeline.stats
            started = stats.batch_started_monotonic
            checks["stuck_batch"] = bool(started and time.monotonic() - started > STUCK_AFTER_S)
            checks["consumer_failing"] = stats.consecutive_failures >= FAILING_AFTER
            checks["batches"] = stats.batches
            checks["dead_lettered"] = stats.dead_lettered
            if stats.consecutive_failures:
                checks["last_error"] = stats.last_error
        return checks

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter, status: bytes, body: bytes, content_type: str
    ) -> None:
        writer.write(
            b"HTTP/1.1 "
            + status
            + b"\r\nContent-Type: "
            + content_type.encode()
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1].decode() if request.count(b" ") >= 2 else "/"
            if path.startswith("/readyz"):
                checks = await self.readiness()
                ok = (
                    checks["database"] is True
                    and checks["background"] is True
                    and checks["consumer"] is True
                    and not checks.get("stuck_batch")
                    and not checks.get("consumer_failing")
                    and not checks.get("relay_failing")
                )
            elif path.startswith("/metrics"):
                await self._respond(
                    writer, b"200 OK", await metrics.render(self._runtime), metrics.CONTENT_TYPE
                )
                return
            elif path.startswith("/healthz"):
                ok = self._runtime.alive()
                checks = {"alive": ok, "failed_loops": list(self._runtime.failed_loops)}
            else:
                checks, ok = {"error": "not found"}, False
            status = (
                b"200 OK"
                if ok
                else (b"404 Not Found" if "error" in checks else b"503 Service Unavailable")
            )
            await self._respond(writer, status, json.dumps(checks).encode(), "application/json")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _plain(stats: object) -> object:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return repr(stats)
