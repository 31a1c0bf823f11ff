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
import base64
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import structlog

from shared import inbox
from shared.contracts import (
    InvalidMessageError,
    Message,
    UnknownType,
    decode,
    derived_message_id,
    utc_now,
)
from shared.contracts.base import ACCOUNT_PATTERN
from shared.contracts.events import DeadLettered, DeadLetterPayload
from shared.contracts.topics import logical
from shared.db import is_transient
from shared.inbox import InboxEntry, InboxKey
from shared.logging import get_logger
from shared.uow import StoreFactory, UnitOfWork

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


UNKNOWN_ACCOUNT = "unknown"
"""The account of a dead letter whose record named no valid account."""

REPLAY_HEADER = "offramp-replay-of"
"""Set by ``offramp deadletters replay``: the id of the dead letter a record replays."""

# What a dead letter keeps of the original record: enough to read and replay it, never so
# much that the dead letter itself is too large to publish (a truncated value is replayed
# from its source coordinates instead).
MAX_KEPT_VALUE_CHARS = 256 * 1024
MAX_KEPT_HEADERS = 32
MAX_KEPT_HEADER_CHARS = 1024
MAX_KEPT_KEY_CHARS = 1024
MAX_DEAD_LETTER_BYTES = 900_000
"""A dead letter stays under Kafka's default 1 MB record limit, envelope included."""

_ACCOUNT = re.compile(ACCOUNT_PATTERN)


class RejectedMessageError(Exception):
    """A valid message that can never be applied (e.g. refers to another account's data).

    Handlers raise it; the message is dead-lettered with ``reason`` and nothing it wrote is
    kept.
    """

    def __init__(self, reason: str, *, kind: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class KafkaRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Incoming:
    record: KafkaRecord
    message: Message | UnknownType | None
    error: InvalidMessageError | None
    replay_of: str | None = None

    @property
    def account_id(self) -> str:
        if self.message is not None:
            return self.message.account_id
        account = self.error.envelope.get("account_id") if self.error is not None else None
        if isinstance(account, str) and _ACCOUNT.fullmatch(account):
            return account
        return UNKNOWN_ACCOUNT

    @property
    def inbox_id(self) -> str:
        if isinstance(self.message, Message):
            return str(self.message.message_id)
        if isinstance(self.message, UnknownType):
            return self.message.message_id
        r = self.record
        return f"kafka:{r.topic}:{r.partition}:{r.offset}"

    @property
    def inbox_key(self) -> InboxKey:
        return (self.account_id, self.inbox_id)

    @property
    def type_name(self) -> str:
        if self.message is not None:
            return self.message.type
        return "<invalid>"

    def inbox_entry(self, outcome: str) -> InboxEntry:
        return InboxEntry(
            self.account_id, self.inbox_id, self.type_name, outcome, replay_of=self.replay_of
        )


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
        replay_of = _replay_of(record)
        try:
            topic = logical(record.topic, self._namespace)
            return Incoming(record, decode(record.value, topic=topic), None, replay_of)
        except InvalidMessageError as exc:
            return Incoming(record, None, exc, replay_of)
        except Exception as exc:  # noqa: BLE001 - whatever one record holds, it is that record's
            error = InvalidMessageError("invalid_message", f"record could not be read: {exc!r}")
            return Incoming(record, None, error, replay_of)

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
                with structlog.contextvars.bound_contextvars(**_log_context(item)):
                    self._dead_letter(uow, item, item.error.kind, item.error.reason, attempts=1)
                counts["dead_lettered"] += 1
            elif isinstance(message, UnknownType):
                # Recorded and skipped: producers may add types before we understand them.
                counts["unknown_types"] += 1
                log.info("message_type_skipped", **_log_context(item))
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
            with structlog.contextvars.bound_contextvars(**_log_context(alone)):
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
                    **_log_context(item),
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
                item = Incoming(_Coordinates(at.topic, at.partition, at.offset), None, None)
            claimed = await self._claim(uow, item, "dead_lettered")
            if claimed:
                self._dead_letter(uow, item, kind, reason, attempts=attempts)
        return claimed

    def _dead_letter(
        self, uow: UnitOfWork[Any], item: Incoming, kind: str, reason: str, *, attempts: int
    ) -> None:
        record = item.record
        log.warning("message_dead_lettered", error_kind=kind, reason=reason, **_log_context(item))
        message = item.message
        value = _text(record.value) or ""
        key = _text(record.key)
        all_headers = list(record.headers or ())
        headers = {
            name[:MAX_KEPT_HEADER_CHARS]: (_text(raw) or "")[:MAX_KEPT_HEADER_CHARS]
            for name, raw in all_headers[:MAX_KEPT_HEADERS]
        }
        # Anything cut (or a header name seen twice) means replay must read the record
        # itself from its source coordinates.
        truncated = (
            len(value) > MAX_KEPT_VALUE_CHARS
            or len(key or "") > MAX_KEPT_KEY_CHARS
            or len(headers) < len(all_headers)
            or any(
                len(name) > MAX_KEPT_HEADER_CHARS or len(_text(raw) or "") > MAX_KEPT_HEADER_CHARS
                for name, raw in all_headers
            )
        )
        account_id = item.account_id
        payload = DeadLetterPayload(
            consumer=self.consumer,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            source_key=_clip(key, MAX_KEPT_KEY_CHARS),
            message_id=message.message_id if isinstance(message, Message) else None,
            message_type=item.type_name if message is not None else None,
            error_kind=kind,
            reason=reason[:4000],
            attempts=attempts,
            original_value=value[:MAX_KEPT_VALUE_CHARS],
            original_headers=headers,
            original_truncated=truncated,
            original_size=None if record.value is None else len(record.value),
        )
        dead = DeadLettered.create(
            message_id=derived_message_id(
                "deadletter",
                account_id,
                self.consumer,
                record.topic,
                record.partition,
                record.offset,
            ),
            account_id=account_id,
            payload=payload,
        )
        # Escaping can make the kept text several times its length in JSON: what the dead
        # letter keeps is cut until the whole message fits the broker's record limit.
        keep = MAX_KEPT_VALUE_CHARS
        while len(dead.to_json()) > MAX_DEAD_LETTER_BYTES and keep:
            keep //= 4
            dead = dead.model_copy(
                update={
                    "payload": payload.model_copy(
                        update={
                            "original_value": value[:keep],
                            "original_headers": {} if not keep else headers,
                            "original_truncated": True,
                        }
                    )
                }
            )
        uow.publish(dead)


@dataclass(frozen=True, slots=True)
class _Coordinates:
    """Where a record is, and nothing of what it holds."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def _replay_of(record: KafkaRecord) -> str | None:
    for name, value in record.headers or ():
        if name == REPLAY_HEADER and value:
            return value.decode(errors="replace")[:128]
    return None


def _clip(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(value).decode()
    # NUL is valid UTF-8 but no PostgreSQL text or jsonb value may hold it.
    return text if "\x00" not in text else "b64:" + base64.b64encode(value).decode()


def _log_context(item: Incoming) -> dict[str, Any]:
    record = item.record
    context: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "message_key": _text(record.key),
    }
    message = item.message
    if isinstance(message, Message):
        context["account_id"] = message.account_id
        context["message_id"] = str(message.message_id)
        context["message_type"] = message.type
        context["correlation_id"] = str(message.correlation_id or message.message_id)
    elif isinstance(message, UnknownType):
        context["account_id"] = message.account_id
        context["message_type"] = message.type
    return context
