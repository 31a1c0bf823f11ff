"""A tiny HTTP endpoint for Kubernetes probes: ``/healthz`` (alive) and ``/readyz``.

Ready means the database answers, every background loop (outbox relay, timers) still
runs, and the broker's producer is connected; FastStream's own ping cannot see a dead
consumer, so this checks the service's own parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING

from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)

STUCK_AFTER_S = 120.0
"""A batch still in progress after this long makes the service unready."""


class HealthServer:
    def __init__(self, runtime: ServiceRuntime, *, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - probes come from the kubelet
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
        # FastStream's own ping sees only the cluster; this sees our consumer: it must be
        # running, and no batch may have been stuck for longer than STUCK_AFTER_S.
        checks["consumer"] = all(sub.running for sub in runtime.broker.subscribers)
        if runtime.pipeline is not None:
            stats = runtime.pipeline.stats
            started = stats.batch_started_monotonic
            checks["stuck_batch"] = bool(started and time.monotonic() - started > STUCK_AFTER_S)
            checks["batches"] = stats.batches
            checks["dead_lettered"] = stats.dead_lettered
        return checks

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
                )
            elif path.startswith("/healthz"):
                checks, ok = {"alive": True}, True
            else:
                checks, ok = {"error": "not found"}, False
            body = json.dumps(checks).encode()
            status = (
                b"200 OK"
                if ok
                else (b"404 Not Found" if "error" in checks else b"503 Service Unavailable")
            )
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
