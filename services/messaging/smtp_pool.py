"""Pooled SMTP connections to one relay: several messages per connection instead of a
connect, EHLO, STARTTLS and AUTH per message (which capped one sender near 370 emails/s).

A connection is taken for one message and given back after it; at most ``size`` are open
at once (a call waits for one, within its own time-out). One that the relay closed, that
failed mid-transaction, that was cancelled (the sender's time-out), or that carried
``max_messages`` messages is closed and the next call opens a fresh one. One idle for
longer than ``idle_check_s`` is checked with NOOP first, and one idle for longer than
``idle_close_s`` is closed (relays drop idle clients after a few minutes). After a refused
transaction aiosmtplib sends RSET, so the next message starts clean; a completed DATA ends
its transaction by itself (RFC 5321 4.1.1.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message

import aiosmtplib

from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SmtpRelay:
    """How to reach and log in to one relay."""

    host: str
    port: int
    use_tls: bool = False
    """Implicit TLS from the first byte (port 465)."""
    start_tls: bool | None = None
    """True: STARTTLS or fail; False: never; None: when the relay offers it."""
    validate_certs: bool = True
    cert_bundle: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class PoolLimits:
    size: int = 32
    max_messages: int = 100
    idle_check_s: float = 5.0
    idle_close_s: float = 60.0


@dataclass(slots=True)
class _Connection:
    smtp: aiosmtplib.SMTP
    messages: int = 0
    idle_since: float = 0.0


@dataclass(slots=True)
class PoolStats:
    connections_opened: int = 0
    connections_closed: int = 0
    messages: int = 0


class SmtpPool:
    """A bounded pool of connections to ``relay``; ``send`` raises what aiosmtplib raises."""

    def __init__(self, relay: SmtpRelay, *, limits: PoolLimits, timeout_s: float) -> None:
        self._relay = relay
        self._limits = limits
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(limits.size)
        self._idle: list[_Connection] = []
        self.stats = PoolStats()

    async def send(self, message: Message, *, sender: str, recipient: str) -> None:
        """Send ``message`` over a pooled connection (a fresh one when none is usable)."""
        async with self._connection() as connection:
            await connection.smtp.send_message(message, sender=sender, recipients=[recipient])
            connection.messages += 1
            self.stats.messages += 1

    async def close(self) -> None:
        """Close every idle connection (those in use close when given back)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._quit(connection)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Connection]:
        async with self._slots:
            connection = await self._take()
            reusable = False
            try:
                yield connection
                reusable = True
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
                # The relay answered (aiosmtplib sent RSET after it): the connection is fine.
                reusable = connection.smtp.is_connected
                raise
            finally:
                # Anything else (a dropped connection, a time-out's cancellation mid-command)
                # leaves the session in an unknown state: it is not used again.
                if reusable and connection.messages < self._limits.max_messages:
                    connection.idle_since = time.monotonic()
                    self._idle.append(connection)
                elif reusable:
                    await self._quit(connection)
                else:
                    self._drop(connection)

    async def _take(self) -> _Connection:
        """The most recently used idle connection that still works, or a new one."""
        while self._idle:
            connection = self._idle.pop()
            idle_for = time.monotonic() - connection.idle_since
            if not connection.smtp.is_connected or idle_for > self._limits.idle_close_s:
                self._drop(connection)
                continue
            if idle_for > self._limits.idle_check_s and not await self._alive(connection):
                continue
            return connection
        return await self._open()

    async def _alive(self, connection: _Connection) -> bool:
        try:
            await connection.smtp.noop()
        except (aiosmtplib.SMTPException, OSError):
            self._drop(connection)
            return False
        return True

    async def _open(self) -> _Connection:
        relay = self._relay
        smtp = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            use_tls=relay.use_tls,
            start_tls=relay.start_tls,
            validate_certs=relay.validate_certs,
            cert_bundle=relay.cert_bundle,
            username=relay.username,
            password=relay.password,
            timeout=self._timeout_s,
        )
        await smtp.connect()  # EHLO, STARTTLS and AUTH as configured
        self.stats.connections_opened += 1
        return _Connection(smtp)

    async def _quit(self, connection: _Connection) -> None:
        try:
            await connection.smtp.quit()
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.debug("smtp_quit_failed", error=repr(exc))
        self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        if connection.smtp.is_connected:
            connection.smtp.close()
        self.stats.connections_closed += 1
