"""What wakes the sender loop: a NOTIFY on ``SENDS_CHANNEL`` as soon as a send is queued
(written in the queueing transaction, so delivered at its commit), or the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg

from services.messaging.send_queue_sql import SENDS_CHANNEL
from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class Wakeup:
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self, *_args: object) -> None:
        self.event.set()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=timeout_s)
        self.event.clear()


async def listen(dsn: str, wakeup: Wakeup, *, check_s: float) -> None:
    """Notify ``wakeup`` at every queued send, reconnecting for as long as it runs."""
    # A dedicated connection: a pooled one would lose the LISTEN when handed back.
    while True:
        try:
            conn = await asyncpg.connect(
                dsn, server_settings={"application_name": "offramp-messaging-sender"}
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("sender_listen_connect_failed", error=repr(exc))
            await asyncio.sleep(check_s)
            continue
        try:
            await _listen_until_closed(conn, wakeup, check_s=check_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("sender_listen_failed", error=repr(exc))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=2))


async def _listen_until_closed(
    conn: asyncpg.Connection[asyncpg.Record], wakeup: Wakeup, *, check_s: float
) -> None:
    closed = asyncio.Event()
    conn.add_termination_listener(lambda _conn: closed.set())
    await conn.add_listener(SENDS_CHANNEL, wakeup.notify)
    wakeup.notify()  # sends queued while nobody listened
    while not conn.is_closed():
        # The termination callback is the fast path; the periodic look is the safety net.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), timeout=check_s)
    log.warning("sender_listen_connection_lost")
