"""The unit of work: one database transaction, the service's store bound to it, and the
messages the work will publish once it commits.

Handlers, the timer loop and the sender all work through one::

    async with UnitOfWork.begin(pool, PostgresSchedulerStore) as uow:
        timers = await uow.store.fire_due(now, limit)
        uow.publish(...)

Leaving the block writes the outbox in the same transaction and commits; an exception
rolls everything back, messages included. Tests hand handlers a unit of work over a fake
store (``UnitOfWork(None, FakeStore())``): nothing else in a handler touches the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import asyncpg

from shared.contracts import Message
from shared.db import DbConnection
from shared.outbox import OutgoingMessage, write_outbox

StoreT = TypeVar("StoreT")

StoreFactory = Callable[[DbConnection], StoreT]
"""How a service's store is made for one transaction's connection."""


class UnitOfWork(Generic[StoreT]):
    __slots__ = ("conn", "outgoing", "store")

    def __init__(self, conn: DbConnection | Any, store: StoreT) -> None:
        self.conn = conn
        """The transaction's connection: plumbing (inbox, savepoints) only, never handlers."""
        self.store = store
        self.outgoing: list[OutgoingMessage] = []

    def publish(self, message: Message, topic: str | None = None) -> None:
        """Publish ``message`` once (and only if) this unit of work commits."""
        self.outgoing.append(OutgoingMessage.of(message, topic))

    @staticmethod
    @contextlib.asynccontextmanager
    async def begin(
        pool: asyncpg.Pool, store: StoreFactory[StoreT]
    ) -> AsyncIterator[UnitOfWork[StoreT]]:
        """A transaction on a pooled connection; the outbox is written as it commits."""
        async with pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, store(conn))
            yield uow
            await write_outbox(conn, uow.outgoing)
