"""A real local HTTP provider (aiohttp on localhost) that records every request and answers
as scripted: Twilio's Messages API and a JSON webhook with its idempotency look-up."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One scripted answer; ``delay_s`` holds it back (a provider that times out)."""

    status: int = 201
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    json: dict[str, Any] | None


@dataclass
class HttpProvider:
    """Answers each POST with the next scripted reply (then 201 with a fresh id); a 2xx
    answer marks its Idempotency-Key accepted, which ``GET /hook/{key}`` reports."""

    script: list[Reply] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    answered_at: list[float] = field(default_factory=list)
    """``time.perf_counter()`` of every accepted POST's answer (for the benchmark)."""
    port: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    async def _message(self, request: web.Request) -> web.Response:
        form: dict[str, str] = {}
        body: dict[str, Any] | None = None
        if request.content_type == "application/json":
            body = await request.json()
        else:
            form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(Recorded("POST", request.path, dict(request.headers), form, body))
        reply = self.script.pop(0) if self.script else Reply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)  # the provider being slow is the point
        answer = reply.body
        if answer is None and reply.status < 300:
            answer = {"sid": f"SM{next(self._ids):032d}", "id": f"hook-{next(self._ids)}"}
        if reply.status < 300 and "Idempotency-Key" in request.headers:
            self.accepted.add(request.headers["Idempotency-Key"])
        if reply.status < 300:
            self.answered_at.append(time.perf_counter())
        return web.json_response(answer or {}, status=reply.status, headers=reply.headers)

    async def _lookup(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded("GET", request.path, dict(request.headers), {}, None))
        key = request.match_info["key"]
        return web.json_response({}, status=200 if key in self.accepted else 404)


@contextlib.asynccontextmanager
async def http_provider() -> AsyncIterator[HttpProvider]:
    provider = HttpProvider()
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", provider._message)
    app.router.add_post("/hook", provider._message)
    app.router.add_get("/hook/{key}", provider._lookup)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    provider.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield provider
    finally:
        await runner.cleanup()
