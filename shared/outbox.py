"""Transactional outbox: messages are written with the change that caused them and
published by a relay after commit, so a change and its messages are never half-done.

Delivery is at least once (a relay that dies between publishing and deleting publishes
again); every consumer de-duplicates on ``message_id``. One relay per service schema is
active at a time (a PostgreSQL advisory lock elects it), which keeps rows in id order, so
one record's messages leave in the order they were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from shared.contracts import TOPIC_OF_TYPE, Message
from shared.db import DbConnection
from shared.logging import get_logger

log = get_logger(__name__)

PublishFn = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[Awaitable[Any]]]
"""(topic, key, value, headers) -> awaitable that resolves once the broker has it."""


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, message: Message, topic: str | None = None) -> OutgoingMessage:
        return cls(
            topic=topic or TOPIC_OF_TYPE[message.type],
            key=message.partition_key(),
            value=message.to_json(),
            headers=message_headers(message),
        )


def message_headers(message: Message) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "message-type": message.type,
        "message-id": str(message.message_id),
        "account-id": message.account_id,
    }
    if message.correlation_id is not None:
        headers["correlation_id"] = str(message.correlation_id)
    return headers


@dataclass(slots=True)
class UnitOfWork:
    """One database transaction and the messages it will publish once committed."""

    conn: DbConnection
    outgoing: list[OutgoingMessage] = field(default_factory=list)

    def publish(self, message: Message, topic: str | None = None) -> None:
        self.outgoing.append(OutgoingMessage.of(message, topic))


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


async def write_outbox(conn: DbConnection, messages: Sequence[OutgoingMessage]) -> None:
    """Insert ``messages`` in one statement, inside the caller's transaction."""
    if not messages:
        return
    await conn.execute(
        """INSERT INTO outbox (topic, key, value, headers)
           SELECT t, k, v, h::jsonb FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
                AS m(t, k, v, h)""",
        [m.topic for m in messages],
        [m.key for m in messages],
        [m.value for m in messages],
        [json.dumps(m.headers) for m in messages],
    )
    # The outbox's statement trigger (shared/sql/0002) notifies the relay at commit.


class OutboxRelay:
    """Publishes committed outbox rows in id order, then deletes them."""

    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        publish: PublishFn,
        batch_size: int = 1000,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.relayed_total = 0
        self.is_leader = False

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._lead_or_wait()
                backoff = 0.5
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.is_leader = False
                log.warning("outbox_relay_error", schema=self._schema, error=repr(exc))
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _lead_or_wait(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={"search_path": self._schema, "application_name": "outbox-relay"},
        )
        try:
            while not self._stopping.is_set():
                if await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext('offramp.outbox.' || $1))", self._schema
                ):
                    break
                # Another replica relays; stand by to take over if it goes away.
                await self._sleep(self._poll_interval_s)
            else:
                return
            self.is_leader = True
            log.info("outbox_relay_leading", schema=self._schema)
            await conn.add_listener(notify_channel(self._schema), self._on_notify)
            while not self._stopping.is_set():
                relayed = await self.relay_once(conn)
                if relayed < self._batch_size:
                    await self._sleep(self._poll_interval_s)
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=2))

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def relay_once(self, conn: DbConnection) -> int:
        """Publish one batch of committed rows; returns how many were relayed."""
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            return 0
        confirmations = [
            await self._publish(
                row["topic"], row["key"].encode(), row["value"], json.loads(row["headers"])
            )
            for row in rows
        ]
        await asyncio.gather(*confirmations)
        await conn.execute(
            "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
        )
        self.relayed_total += len(rows)
        return len(rows)
