"""A small Kafka client for Offramp's contracts: what the operator CLI, the demo and the
tests use to publish commands and events and to read topics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import Message
from shared.contracts.topics import physical
from shared.outbox import OutgoingMessage


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

    async def read_all(self, topic: str) -> list[dict[str, Any]]:
        """Every message on ``topic`` so far, as JSON documents, read from the start.

        "So far" is the end of each partition when the call starts, so the answer never
        depends on how fast the broker answers.
        """
        name = self.topic(topic)
        partitions = [TopicPartition(name, number) for number in await self._partitions(name)]
        if not partitions:
            return []
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            found: list[dict[str, Any]] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=1000)
                found.extend(
                    _document(record.value)
                    for records in batch.values()
                    for record in records
                    if record.offset < ends[TopicPartition(record.topic, record.partition)]
                )
            return found
        finally:
            await consumer.stop()

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


def _document(value: bytes | None) -> dict[str, Any]:
    try:
        document = json.loads(value or b"")
    except (TypeError, ValueError):
        return {"type": "<not json>", "raw": repr(value)}
    return document if isinstance(document, dict) else {"type": "<not an object>", "raw": document}


def of_type(documents: Sequence[dict[str, Any]], message_type: str) -> list[dict[str, Any]]:
    return [d for d in documents if d.get("type") == message_type]
