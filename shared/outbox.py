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
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from aiokafka import errors as kafka_errors

from shared.contracts import TOPIC_OF_TYPE, Message
from shared.db import DbConnection
from shared.logging import get_logger

log = get_logger(__name__)


class RelayProducer(Protocol):
    """What the relay publishes through (``shared.kafka.KafkaRelayProducer`` in services)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        """Queue one record; the returned awaitable resolves once the broker has it."""
        ...

    async def topic_ready(self, topic: str) -> None:
        """Return once the broker knows ``topic``; raise (soon) if it does not."""
        ...


class PermanentPublishError(Exception):
    """A row that no retry can publish (too large, unknown topic, refused by the broker)."""


class TopicUnavailableError(Exception):
    """The broker answered but does not know the row's topic (deleted, or not created)."""


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


TOPIC_READY_S = 3.0
"""How long a round waits to learn whether the broker knows a topic."""


@dataclass(slots=True)
class RelayStats:
    relayed: int = 0
    quarantined: int = 0
    failed_rounds: int = 0
    consecutive_failures: int = 0
    """Rounds in a row that published nothing because of an error; 0 once one succeeds."""
    last_error: str | None = None


class OutboxRelay:
    """Publishes committed outbox rows in id order, then deletes them.

    It cannot die of an error: a failed round backs off, starts a fresh producer and goes
    on. A row that can never be published is moved to ``outbox_quarantine`` with the
    reason and never holds back the rows behind it; a row that keeps failing while
    others go out is quarantined after ``max_row_attempts``. When the broker is away
    every row fails alike: those rounds count against no row.
    """

    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        producer_factory: Callable[[], RelayProducer],
        known_topics: Collection[str] | None = None,
        batch_size: int = 1000,
        poll_interval_s: float = 1.0,
        max_row_attempts: int = 10,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._producer_factory = producer_factory
        self._known_topics = None if known_topics is None else frozenset(known_topics)
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._max_row_attempts = max_row_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._producer: RelayProducer | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.stats = RelayStats()
        self.is_leader = False

    @property
    def relayed_total(self) -> int:
        return self.stats.relayed

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = self._backoff_initial_s
        try:
            while not self._stopping.is_set():
                try:
                    await self._lead_or_wait()
                    backoff = self._backoff_initial_s
                except Exception as exc:  # noqa: BLE001 - the relay must outlive any error
                    self.is_leader = False
                    self._failed(exc)
                    await self._close_producer()
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self._backoff_max_s)
        finally:
            await self._close_producer()

    def _failed(self, exc: BaseException) -> None:
        self.stats.failed_rounds += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = repr(exc)[:500]
        log.warning(
            "outbox_relay_error",
            schema=self._schema,
            failures_in_a_row=self.stats.consecutive_failures,
            error=repr(exc),
        )

    async def _producer_started(self) -> RelayProducer:
        if self._producer is None:
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)

    async def _lead_or_wait(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=10,
            command_timeout=60,
            server_settings={"search_path": self._schema, "application_name": "outbox-relay"},
        )
        try:
            while not self._stopping.is_set():
                leading = await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext('offramp.outbox.' || $1))", self._schema
                )
                if leading:
                    break  # healthy again once a round publishes (or finds nothing to)
                # Standing by is all a replica that does not lead has to do: it is healthy
                # as long as the database answers.
                self.stats.consecutive_failures = 0
                # Another replica relays; stand by to take over if it goes away.
                await self._sleep(self._poll_interval_s)
            else:
                return
            self.is_leader = True
            log.info("outbox_relay_leading", schema=self._schema)
            await conn.add_listener(notify_channel(self._schema), self._on_notify)
            backoff = self._backoff_initial_s
            while not self._stopping.is_set():
                relayed, kept = await self.relay_once(conn)
                if kept:
                    # The broker is away or refusing: a fresh producer, after a pause.
                    await self._close_producer()
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self._backoff_max_s)
                elif relayed < self._batch_size:
                    backoff = self._backoff_initial_s
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

    async def relay_once(self, conn: DbConnection) -> tuple[int, int]:
        """Publish one batch of committed rows.

        Returns how many rows went out and how many failed and stay for the next round.
        """
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers, attempts FROM outbox ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            self.stats.consecutive_failures = 0
            return 0, 0
        producer = await self._producer_started()
        results = await self._publish_all(producer, rows)
        done = [row["id"] for row, result in zip(rows, results, strict=True) if result is None]
        failures = [
            (row, result)
            for row, result in zip(rows, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if done:
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", done)
            self.stats.relayed += len(done)
        kept = 0
        if failures:
            kept = await self._set_aside(conn, failures, others_went_out=bool(done))
        if kept and not done:
            self._failed(failures[0][1])
        else:
            self.stats.consecutive_failures = 0
        return len(done), kept

    async def _publish_all(
        self, producer: RelayProducer, rows: Sequence[asyncpg.Record]
    ) -> list[BaseException | None]:
        """Queue every row in id order, then wait for the broker's acks together; returns
        each row's error, or None once the broker has it.

        Queuing is cheap and keeps the order; waiting on the acks' futures together (not
        one task per row) is what lets a round of 1,000 rows cost little more than one.
        Once the broker is unreachable, the rest of the round is not queued.
        """
        results: list[BaseException | None] = [None] * len(rows)
        acks: list[tuple[int, Awaitable[Any]]] = []
        unavailable = await self._unavailable_topics(producer, {row["topic"] for row in rows})
        for index, row in enumerate(rows):
            if row["topic"] in unavailable:
                results[index] = unavailable[row["topic"]]
                continue
            try:
                acks.append((index, await self._queue(producer, row)))
            except Exception as exc:  # noqa: BLE001 - sorted out per row by _set_aside
                results[index] = exc
                if is_transport_error(exc):
                    for rest in range(index + 1, len(rows)):
                        results[rest] = exc
                    break
        outcomes = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
        for (index, _), outcome in zip(acks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results[index] = outcome
        return results

    async def _unavailable_topics(
        self, producer: RelayProducer, topics: set[str]
    ) -> dict[str, BaseException]:
        """The round's topics the broker cannot take, each asked once (not once per row:
        a missing topic would otherwise hold every row behind it for a metadata time-out)."""
        known = {t for t in topics if self._known_topics is None or t in self._known_topics}
        answers = await asyncio.gather(
            *(asyncio.wait_for(producer.topic_ready(t), TOPIC_READY_S) for t in sorted(known)),
            return_exceptions=True,
        )
        unavailable: dict[str, BaseException] = {}
        for topic, answer in zip(sorted(known), answers, strict=True):
            if isinstance(answer, BaseException):
                unavailable[topic] = (
                    answer
                    if is_transport_error(answer) and not isinstance(answer, TimeoutError)
                    else TopicUnavailableError(f"the broker does not know {topic!r}: {answer!r}")
                )
        return unavailable

    async def _queue(self, producer: RelayProducer, row: asyncpg.Record) -> Awaitable[Any]:
        topic = row["topic"]
        if self._known_topics is not None and topic not in self._known_topics:
            raise PermanentPublishError(f"unknown topic {topic!r}")
        headers = json.loads(row["headers"])
        return await producer.send(topic, row["key"].encode(), row["value"], headers)

    async def _set_aside(
        self,
        conn: DbConnection,
        failures: Sequence[tuple[asyncpg.Record, BaseException]],
        *,
        others_went_out: bool,
    ) -> int:
        """Count a failed attempt against each row that failed for a reason of its own, and
        quarantine the rows that can never go out; returns how many rows stay."""
        quarantine: list[tuple[int, str]] = []
        counted: list[tuple[int, str]] = []
        for row, error in failures:
            reason = repr(error)[:2000]
            if is_permanent_publish_error(error):
                quarantine.append((row["id"], reason))
            elif is_row_fault(error, others_went_out=others_went_out):
                if row["attempts"] + 1 >= self._max_row_attempts:
                    quarantine.append((row["id"], f"failed {row['attempts'] + 1} times: {reason}"))
                else:
                    counted.append((row["id"], reason))
        if counted:
            await conn.execute(
                """UPDATE outbox SET attempts = attempts + 1, last_error = f.reason
                   FROM unnest($1::bigint[], $2::text[]) AS f(id, reason)
                   WHERE outbox.id = f.id""",
                [i for i, _ in counted],
                [r for _, r in counted],
            )
        if quarantine:
            async with conn.transaction():
                await conn.execute(
                    """WITH moved AS (
                           DELETE FROM outbox o
                           USING unnest($1::bigint[], $2::text[]) AS q(id, reason)
                           WHERE o.id = q.id
                           RETURNING o.*, q.reason)
                       INSERT INTO outbox_quarantine
                           (id, topic, key, value, headers, created_at, attempts, reason)
                       SELECT id, topic, key, value, headers, created_at, attempts + 1, reason
                       FROM moved""",
                    [i for i, _ in quarantine],
                    [r for _, r in quarantine],
                )
            self.stats.quarantined += len(quarantine)
            for row_id, reason in quarantine:
                log.error(
                    "outbox_row_quarantined", schema=self._schema, outbox_id=row_id, reason=reason
                )
        return len(failures) - len(quarantine)


def is_permanent_publish_error(error: BaseException) -> bool:
    """No retry can publish this row: it is too large, its topic is unknown or refused."""
    if isinstance(error, PermanentPublishError | UnicodeError | ValueError | TypeError):
        return True
    return isinstance(
        error,
        kafka_errors.MessageSizeTooLargeError
        | kafka_errors.RecordTooLargeError
        | kafka_errors.InvalidTopicError
        | kafka_errors.TopicAuthorizationFailedError
        | kafka_errors.UnsupportedForMessageFormatError,
    )


def is_row_fault(error: BaseException, *, others_went_out: bool) -> bool:
    """Whether a failed attempt counts against the row (quarantined after enough of them).

    The broker being away, slow, or between leaders is nobody's row's fault: such rows are
    retried for as long as it takes, never quarantined. A topic the broker does not know
    while other rows go out, or an error the broker calls final, is.
    """
    if isinstance(error, TopicUnavailableError):
        return others_went_out
    if is_transport_error(error):
        return False
    return not getattr(error, "retriable", False)


def is_transport_error(error: BaseException) -> bool:
    """The broker could not be reached or did not answer in time: no row's fault."""
    return isinstance(
        error,
        kafka_errors.KafkaConnectionError
        | kafka_errors.KafkaTimeoutError
        | kafka_errors.NodeNotReadyError
        | kafka_errors.RequestTimedOutError
        | kafka_errors.ProducerClosed
        | OSError
        | TimeoutError,
    )
