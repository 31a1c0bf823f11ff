"""``make bench``, the providers' part: how fast messaging's providers hand messages over.

1. emails/s through ``SmtpProvider`` (pooled connections, ``OFFRAMP_SMTP_POOL_SIZE``
   default 32) to a local SMTP sink (aiosmtpd on localhost, in a thread of this process);
2. SMS/s through ``TwilioProvider`` (aiohttp, ``OFFRAMP_HTTP_MAX_CONNECTIONS`` default 32)
   to a local HTTP provider (aiohttp on localhost, in this process) answering 201.

Each runs ``OFFRAMP_SEND_CONCURRENCY`` calls at once (default 32, as one messaging
replica does), so the figure is one replica's provider ceiling; the sender's claim and
record transactions come on top (the end-to-end figure is ``tests/bench_sends.py``).
Both servers share the machine's cores with the client, so the figures are low bounds.

Sizes: OFFRAMP_BENCH_EMAILS (default 5000), OFFRAMP_BENCH_SMS (default 5000).
``python -m tests.bench_providers`` runs this part alone.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.controller import Controller

from services.messaging.config import MessagingSettings
from services.messaging.http_providers import TwilioProvider
from services.messaging.providers import OutboundEmail, SmtpProvider
from services.messaging.smtp_pool import PoolLimits
from shared.contracts.inbound import Channel
from tests.support.http_provider import http_provider
from tests.support.processes import free_port


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


class CountingSink:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:  # noqa: N802
        self.received += 1
        return "250 Message accepted for delivery"


def message(n: int, channel: Channel) -> OutboundEmail:
    return OutboundEmail(
        message_id=f"<00000000-0000-4000-8000-{n:012d}.0@bench.test>",
        sender="+15550100" if channel is Channel.SMS else "rep@bench.test",
        recipient="+14155550123" if channel is Channel.SMS else f"c{n}@example.com",
        subject="" if channel is Channel.SMS else "Quick question",
        body="Hi, do you have a minute this week? " * 3,
        channel=channel,
        record=f"contact:c-{n}",
    )


async def _drive(count: int, concurrency: int, call: Callable[[int], Awaitable[object]]) -> float:
    """Run ``count`` calls, ``concurrency`` at once; the seconds they took."""
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            await call(n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def emails_per_second(count: int, settings: MessagingSettings) -> None:
    sink, port = CountingSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    provider = SmtpProvider(
        host="127.0.0.1",
        port=port,
        timeout_s=settings.send_timeout_s,
        limits=PoolLimits(size=settings.smtp_pool_size),
    )
    try:
        took = await _drive(
            count,
            settings.send_concurrency,
            lambda n: provider.send(message(n, Channel.EMAIL)),
        )
    finally:
        await provider.close()
        controller.stop()
    opened = provider.pool.stats.connections_opened
    say(
        f"SMTP: {sink.received} emails to a local sink in {took:.1f}s: {count / took:.0f} "
        f"emails/s ({settings.send_concurrency} calls at once, {opened} connections opened)"
    )


async def sms_per_second(count: int, settings: MessagingSettings) -> None:
    async with http_provider() as server:
        provider = TwilioProvider(
            base_url=server.url,
            account_sid="ACbench",
            auth_token="bench",
            timeout_s=settings.send_timeout_s,
            max_connections=settings.http_max_connections,
        )
        try:
            took = await _drive(
                count,
                settings.send_concurrency,
                lambda n: provider.send(message(n, Channel.SMS)),
            )
        finally:
            await provider.close()
        say(
            f"SMS: {len(server.posts)} messages to a local Twilio-compatible API in {took:.1f}s: "
            f"{count / took:.0f} SMS/s ({settings.send_concurrency} calls at once)"
        )


async def main() -> None:
    settings = MessagingSettings()
    emails = int(os.environ.get("OFFRAMP_BENCH_EMAILS", "5000"))
    sms = int(os.environ.get("OFFRAMP_BENCH_SMS", "5000"))
    if emails:
        await emails_per_second(emails, settings)
    if sms:
        await sms_per_second(sms, settings)


if __name__ == "__main__":
    asyncio.run(main())
