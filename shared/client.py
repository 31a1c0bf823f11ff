"""A small Kafka client for Offramp's contracts: what the operator CLI, the demo and the
tests use to publish commands and events and to read topics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import Message
from shared.contracts.topics import physical
from shared.outbox import OutgoingMessage


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record exactly as stored: what replaying it must reproduce byte for byte."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class OfframpClient:
    def __init__(self, bootstrap_servers: str, namespace: str = "") -> None:
        self._bootstrap = bootstrap_servers
        self._namespace = namespace
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> OfframpClient:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()

    def topic(self, name: str) -> str:
        return physical(name, self._namespace)

    async def publish(self, message: Message, topic: str | None = None) -> None:
        """Publish ``message`` on its contract topic, keyed by account and record."""
        await self.publish_many([message], topic)

    async def publish_many(self, messages: Sequence[Message], topic: str | None = None) -> None:
        """Publish ``messages`` without waiting for each one; returns when all are acked."""
        assert self._producer is not None, "use OfframpClient as an async context manager"  # noqa: S101
        pending = []
        for message in messages:
            out = OutgoingMessage.of(message, topic)
            pending.append(
                await self._producer.send(
                    self.topic(out.topic),
                    out.value,
                    key=out.key.encode(),
                    headers=[(k, v.encode()) for k, v in out.headers.items()],
                )
            )
        await asyncio.gather(*pending)

    async def publish_raw(self, topic: str, value: bytes, *, key: str) -> None:
        assert self._producer is not None, "use OfframpClient as an async context manager"  # noqa: S101
        await self._producer.send_and_wait(self.topic(topic), value, key=key.encode())

    async def publish_record(
        self,
        physical_topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[int, int]:
        """Publish bytes as they are to a topic named as on the cluster (no namespace added).

        Returns the partition and offset the record was written at.
        """
        assert self._producer is not None, "use OfframpClient as an async context manager"  # noqa: S101
        written = await self._producer.send_and_wait(
            physical_topic, value, key=key, headers=list(headers)
        )
        return written.partition, written.offset

    async def read_all(self, topic: str) -> list[dict[str, Any]]:
        """Every message on ``topic`` so far, as JSON documents, read from the start.

        "So far" is the end of each partition when the call starts, so the answer never
        depends on how fast the broker answers.
        """
        return [_document(record.value) for record in await self.read_records(topic)]

    async def read_records(self, topic: str, *, since_ms: int | None = None) -> list[RawRecord]:
        """Every record on ``topic`` so far (as ``read_all``), whole, in partition order.

        With ``since_ms`` (a Kafka timestamp in ms) each partition is read from the first
        record stamped at or after it instead of from its start.
        """
        name = self.topic(topic)
        partitions = [TopicPartition(name, number) for number in await self._partitions(name)]
        if not partitions:
            return []
        consumer = self._reader()
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            if since_ms is not None:
                starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
                for tp, found in starts.items():
                    consumer.seek(tp, found.offset if found is not None else ends[tp])
            records: list[RawRecord] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=1000)
                records.extend(
                    _raw(record)
                    for found in batch.values()
                    for record in found
                    if record.offset < ends[TopicPartition(record.topic, record.partition)]
                )
            return records
        finally:
            await consumer.stop()

    async def read_at(self, physical_topic: str, partition: int, offset: int) -> RawRecord | None:
        """The record at these coordinates, or None if the topic no longer holds it."""
        if partition not in await self._partitions(physical_topic):
            return None
        tp = TopicPartition(physical_topic, partition)
        consumer = self._reader()
        await consumer.start()
        try:
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if not first <= offset < end:
                return None
            consumer.seek(tp, offset)
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    # Past the offset means it was compacted away (or was a control record).
                    return _raw(record) if record.offset == offset else None
            return None
        finally:
            await consumer.stop()

    def _reader(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None
        )

    async def _partitions(self, name: str) -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([name])
        finally:
            await admin.close()
        return sorted(
            p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]
        )

    async def follow(
        self, topic: str, *, from_beginning: bool = True
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield documents from ``topic`` as they arrive, until the caller stops."""
        consumer = AIOKafkaConsumer(
            self.topic(topic),
            bootstrap_servers=self._bootstrap,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        yield _document(record.value)
        finally:
            await consumer.stop()


def _raw(record: Any) -> RawRecord:
    return RawRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        headers=tuple((name, bytes(value)) for name, value in record.headers),
    )


def _document(value: bytes | None) -> dict[str, Any]:
    try:
        document = json.loads(value or b"")
    except (TypeError, ValueError, RecursionError):  # a reader shows poison, never dies of it
        return {"type": "<not json>", "raw": repr(value)[:2000]}
    return document if isinstance(document, dict) else {"type": "<not an object>", "raw": document}


def of_type(documents: Sequence[dict[str, Any]], message_type: str) -> list[dict[str, Any]]:
    return [d for d in documents if d.get("type") == message_type]
