"""A tiny HTTP endpoint for Kubernetes probes: ``/healthz`` (alive) and ``/readyz``.

Ready means the database answers, every background loop (outbox relay, timers) still
runs, and the broker's producer is connected; FastStream's own ping cannot see a dead
consumer, so this checks the service's own parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)


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
        if runtime.pipeline is not None:
            checks["batches"] = runtime.pipeline.stats.batches
            checks["dead_lettered"] = runtime.pipeline.stats.dead_lettered
        return checks

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1].decode() if request.count(b" ") >= 2 else "/"
            if path.startswith("/readyz"):
                checks = await self.readiness()
                ok = checks["database"] is True and checks["background"] is True
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
