"""The idempotent consumer: every service's subscribers hand their batches to this.

A batch is applied in one database transaction: each message is validated, claimed in
the inbox (a duplicate is skipped), handed to its handler inside a savepoint, and what the
handlers publish goes to the outbox in the same transaction. Only after the commit does
FastStream commit the Kafka offsets. If the batch fails as a whole, its messages are
retried one by one with backoff; a message that keeps failing, or that can never apply,
is dead-lettered with the reason, and the consumer moves on.

Nothing a record carries can stop the consumer: any failure to read one record makes that
record a dead letter. Failures that are not the message's fault (the database is away,
a deadlock, a failover) are never dead-lettered: the batch goes back to Kafka after a
growing pause, and the service reports itself unready meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from shared import inbox
from shared.contracts import (
    InvalidMessageError,
    Message,
    UnknownType,
    decode,
    utc_now,
)
from shared.contracts.topics import logical
from shared.db import is_transient
from shared.inbox import InboxKey
from shared.logging import get_logger
from shared.records import (
    REPLAY_HEADER,
    Coordinates,
    Incoming,
    KafkaRecord,
    dead_letter,
    log_context,
    replay_of,
)
from shared.uow import StoreFactory, UnitOfWork

__all__ = ["REPLAY_HEADER", "Handler", "MessagePipeline", "RejectedMessageError", "runs_of"]

log = get_logger(__name__)

Handler = Callable[[UnitOfWork[Any], list[Any], datetime], Awaitable[None]]
"""A handler: (unit of work, a run of messages of its types, the run's clock reading).

It gets consecutive messages in partition order and must apply them as if one by one
(a later message sees what an earlier one changed); loading and saving for the whole run
at once is what makes a batch cheap. It raises to retry or reject.
"""


def runs_of(
    handlers: Mapping[str, Handler], messages: Sequence[Message]
) -> list[tuple[Handler, list[Any]]]:
    """Consecutive messages whose types share a handler form one run, in order.

    The pipeline calls each handler once per run; the handler harness in ``tests/support``
    uses the same grouping.
    """
    runs: list[tuple[Handler, list[Any]]] = []
    for message in messages:
        handler = handlers[message.type]
        if runs and runs[-1][0] is handler:
            runs[-1][1].append(message)
        else:
            runs.append((handler, [message]))
    return runs


class RejectedMessageError(Exception):
    """A valid message that can never be applied (e.g. refers to another account's data).

    Handlers raise it; the message is dead-lettered with ``reason`` and nothing it wrote is
    kept.
    """

    def __init__(self, reason: str, *, kind: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(slots=True)
class PipelineStats:
    batches: int = 0
    messages: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    unknown_types: int = 0
    last_batch_monotonic: float = 0.0
    database_unavailable: int = 0
    batch_started_monotonic: float = 0.0
    """When the batch in progress started; 0 when none is."""
    consecutive_failures: int = 0
    """Batches in a row given back to Kafka because the database failed; 0 once one lands."""
    last_error: str | None = None


class MessagePipeline:
    def __init__(
        self,
        *,
        consumer: str,
        schema: str,
        pool_provider: Callable[[], asyncpg.Pool],
        store: StoreFactory[Any],
        handlers: Mapping[str, Handler],
        clock: Callable[[], datetime] = utc_now,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        topic_namespace: str = "",
    ) -> None:
        self.consumer = consumer
        self._schema = schema
        self._pool_provider = pool_provider
        self._store = store
        self._handlers = dict(handlers)
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._namespace = topic_namespace
        self.stats = PipelineStats()

    async def process_batch(self, records: Sequence[KafkaRecord]) -> None:
        """Apply ``records`` exactly once each; returns when all are committed.

        Raises only when the failure is not the messages' fault (the database is away):
        FastStream then seeks back and the batch is read again, after a growing pause.
        """
        self.stats.batch_started_monotonic = time.monotonic()
        try:
            await self._process(records)
            self.stats.consecutive_failures = 0
        except Exception as exc:
            self.stats.consecutive_failures += 1
            self.stats.database_unavailable += 1
            self.stats.last_error = repr(exc)[:500]
            pause = min(
                self._backoff_initial_s * 2 ** (self.stats.consecutive_failures - 1),
                self._backoff_max_s,
            )
            log.warning(
                "batch_given_back",
                consumer=self.consumer,
                failures_in_a_row=self.stats.consecutive_failures,
                retry_in_s=pause,
                error=repr(exc),
            )
            await asyncio.sleep(pause)
            raise
        finally:
            self.stats.batch_started_monotonic = 0.0

    async def _process(self, records: Sequence[KafkaRecord]) -> None:
        items = [self._decode(record) for record in records]
        try:
            await self._transaction(items)
        except Exception as exc:  # any failure falls back to one by one
            if is_transient(exc):
                raise
            if len(items) == 1:
                await self._retry_alone(items[0], first_error=exc)
            else:
                log.warning(
                    "batch_failed", consumer=self.consumer, size=len(items), error=repr(exc)
                )
                for item in items:
                    await self._retry_alone(item, first_error=None)
        self.stats.batches += 1
        self.stats.messages += len(items)
        now = time.monotonic()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch_applied",
                size=len(items),
                ms=round((now - self.stats.batch_started_monotonic) * 1000, 1),
            )
        self.stats.last_batch_monotonic = now

    def _decode(self, record: KafkaRecord) -> Incoming:
        replayed = replay_of(record)
        try:
            topic = logical(record.topic, self._namespace)
            return Incoming(record, decode(record.value, topic=topic), None, replayed)
        except InvalidMessageError as exc:
            return Incoming(record, None, exc, replayed)
        except Exception as exc:  # noqa: BLE001 - whatever one record holds, it is that record's
            error = InvalidMessageError("invalid_message", f"record could not be read: {exc!r}")
            return Incoming(record, None, error, replayed)

    async def _transaction(self, items: Sequence[Incoming]) -> None:
        """Apply ``items`` in one transaction.

        A batch of several messages runs without savepoints (they cost two round trips
        each); if any handler fails or rejects, the whole batch rolls back and its
        messages are applied one by one, where a rejection is isolated in a savepoint.
        """
        counts: Counter[str] = Counter()
        now = self._clock()  # one clock reading for every run of the batch
        async with UnitOfWork.begin(self._pool_provider(), self._store) as uow:
            guarded = [
                (item, outcome) for item in items if (outcome := self._outcome(item)) is not None
            ]
            claimed = await inbox.claim_many(
                uow.conn,
                consumer=self.consumer,
                entries=[item.inbox_entry(outcome) for item, outcome in guarded],
            )
            alone = items[0] if len(items) == 1 else None
            for handler, messages in self._runs(uow, [i for i, _ in guarded], claimed, counts):
                await self._call(uow, handler, messages, now, alone=alone, counts=counts)
        # Counted only once committed: a rolled-back batch is applied again.
        self.stats.duplicates += counts["duplicates"]
        self.stats.unknown_types += counts["unknown_types"]
        self.stats.dead_lettered += counts["dead_lettered"]

    def _outcome(self, item: Incoming) -> str | None:
        """What the inbox records for ``item``; None: nothing to guard (not our type)."""
        if item.error is not None:
            return "dead_lettered"
        if isinstance(item.message, UnknownType):
            return "unknown_type"
        if item.message is not None and item.message.type in self._handlers:
            return "applied"
        return None

    def _runs(
        self,
        uow: UnitOfWork[Any],
        items: Sequence[Incoming],
        claimed: set[InboxKey],
        counts: Counter[str],
    ) -> list[tuple[Handler, list[Any]]]:
        """Group newly claimed messages into runs for their handlers, in order.

        ``items`` are the ones the inbox guards (see ``_outcome``).
        """
        fresh: list[Message] = []
        seen: set[InboxKey] = set()
        for item in items:
            key = item.inbox_key
            if key not in claimed or key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            message = item.message
            if item.error is not None:
                with structlog.contextvars.bound_contextvars(**log_context(item)):
                    self._dead_letter(uow, item, item.error.kind, item.error.reason, attempts=1)
                counts["dead_lettered"] += 1
            elif isinstance(message, UnknownType):
                # Recorded and skipped: producers may add types before we understand them.
                counts["unknown_types"] += 1
                log.info("message_type_skipped", **log_context(item))
            elif isinstance(message, Message):
                fresh.append(message)
        return runs_of(self._handlers, fresh)

    async def _call(
        self,
        uow: UnitOfWork[Any],
        handler: Handler,
        messages: list[Any],
        now: datetime,
        *,
        alone: Incoming | None,
        counts: Counter[str],
    ) -> None:
        """Run one handler call; for a message applied alone, isolate a rejection."""
        if alone is None:
            await handler(uow, messages, now)
            return
        mark = len(uow.outgoing)
        try:
            async with uow.conn.transaction():  # a savepoint: a rejection undoes only this
                await handler(uow, messages, now)
        except RejectedMessageError as exc:
            del uow.outgoing[mark:]
            await inbox.set_outcome(
                uow.conn,
                consumer=self.consumer,
                account_id=alone.account_id,
                message_id=alone.inbox_id,
                outcome="dead_lettered",
            )
            with structlog.contextvars.bound_contextvars(**log_context(alone)):
                self._dead_letter(uow, alone, exc.kind, exc.reason, attempts=1)
            counts["dead_lettered"] += 1

    async def _claim(self, uow: UnitOfWork[Any], item: Incoming, outcome: str) -> bool:
        entries = [item.inbox_entry(outcome)]
        return bool(await inbox.claim_many(uow.conn, consumer=self.consumer, entries=entries))

    async def _retry_alone(self, item: Incoming, *, first_error: BaseException | None) -> None:
        error = first_error
        attempt = 1 if first_error is not None else 0
        delay = self._backoff_initial_s
        while attempt < self._max_attempts:
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max_s)
            attempt += 1
            try:
                await self._transaction([item])
            except Exception as exc:  # retried, then dead-lettered
                if is_transient(exc):
                    raise
                error = exc
                log.warning(
                    "message_failed",
                    consumer=self.consumer,
                    attempt=attempt,
                    max_attempts=self._max_attempts,
                    error=repr(exc),
                    **log_context(item),
                )
            else:
                return
        reason = f"failed {attempt} times; last error: {error!r}"
        try:
            claimed = await self._write_dead_letter(item, "processing_failed", reason, attempt)
        except Exception as exc:  # the record may be what cannot be kept
            if is_transient(exc):
                raise
            # Even the dead letter could not be written (say, a value the database refuses):
            # keep where the record is, so nothing is lost and the consumer moves on.
            reason = f"{reason}; the dead letter itself could not be written: {exc!r}"
            claimed = await self._write_dead_letter(
                item, "processing_failed", reason, attempt, coordinates_only=True
            )
        self.stats.dead_lettered += int(claimed)

    def _dead_letter(
        self, uow: UnitOfWork[Any], item: Incoming, kind: str, reason: str, *, attempts: int
    ) -> None:
        log.warning("message_dead_lettered", error_kind=kind, reason=reason, **log_context(item))
        uow.publish(dead_letter(self.consumer, item, kind, reason, attempts=attempts))

    async def _write_dead_letter(
        self,
        item: Incoming,
        kind: str,
        reason: str,
        attempts: int,
        *,
        coordinates_only: bool = False,
    ) -> bool:
        async with UnitOfWork.begin(self._pool_provider(), self._store) as uow:
            if coordinates_only:
                at = item.record
                item = Incoming(Coordinates(at.topic, at.partition, at.offset), None, None)
            claimed = await self._claim(uow, item, "dead_lettered")
            if claimed:
                self._dead_letter(uow, item, kind, reason, attempts=attempts)
        return claimed
