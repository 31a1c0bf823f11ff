"""Kafka plumbing: the broker every service uses, topic creation, and subscribers that
hand whole batches to the idempotent pipeline."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Any, Union

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from pydantic import SkipValidation

from shared.consumer import MessagePipeline
from shared.contracts import MESSAGES_BY_TOPIC
from shared.contracts.topics import TOPIC_BY_NAME, TopicSpec, physical
from shared.logging import get_logger

log = get_logger(__name__)


def create_broker(bootstrap_servers: str, *, client_id: str) -> KafkaBroker:
    """The broker a service consumes through; it publishes nothing itself (the outbox
    relay has its own producer, ``KafkaRelayProducer``)."""
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        logger=logging.getLogger(f"offramp.{client_id}.faststream"),
        graceful_timeout=15.0,
        # Topics are created by ``ensure_topics`` with their partition counts, never by
        # FastStream (it would make one-partition topics) or by the broker on first use.
        allow_auto_create_topics=False,
        # FastStream logs every consumed batch at INFO; that belongs to DEBUG here.
        log_level=logging.DEBUG,
    )


async def ensure_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec], *, replication_factor: int = 1
) -> list[str]:
    """Create the topics that are missing, with explicit partition counts; never auto-create."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="offramp-admin")
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        for spec in missing:
            config = {} if spec.retention_ms is None else {"retention.ms": str(spec.retention_ms)}
            try:
                await admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=config)]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another replica created it first
    finally:
        await admin.close()
    if created:
        log.info("topics_created", topics=created)
    return created


async def tolerant_batch_parser(
    records: tuple[ConsumerRecord[bytes, bytes], ...],
    original: Callable[[tuple[ConsumerRecord[bytes, bytes], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's batch parser, made safe for any header bytes.

    FastStream decodes every header as UTF-8 before our handler runs; one header that is
    not (or has no value) would fail the whole batch again and again. Such headers are
    decoded with replacement characters instead; the pipeline reads the records' own bytes.
    """
    try:
        return await original(records)
    except Exception:  # noqa: BLE001 - any header FastStream cannot read
        return await original(tuple(_readable_headers(record) for record in records))


def _readable_headers(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    headers = [
        (str(name), (value or b"").decode(errors="replace").encode())
        for name, value in record.headers or ()
    ]
    return dataclasses.replace(record, headers=headers)


async def raw_batch_decoder(message: StreamMessage[Any]) -> list[bytes]:
    """Leave decoding to the pipeline, so bad JSON is dead-lettered instead of looping."""
    return [record.value or b"" for record in message.raw_message]


def subscribe_pipeline(
    broker: KafkaBroker,
    pipeline: MessagePipeline,
    *,
    topics: Sequence[str],
    group_id: str,
    namespace: str,
    max_records: int,
    batch_timeout_ms: int,
    fetch_min_bytes: int = 1,
    fetch_max_wait_ms: int = 500,
) -> None:
    """Register one batch subscriber on all of a service's ``topics``, feeding ``pipeline``.

    One consumer per process (not one per topic) keeps the group to one member per
    replica, so starting or stopping a replica costs one rebalance. Offsets are committed
    after the handler returns, that is after the database commit; an exception that
    escapes the pipeline (the database is down) seeks back, so the batch is read again
    (``NACK_ON_ERROR``; FastStream's default, ACK_FIRST, would be at-most-once).
    """

    async def handle(body: Any, message: KafkaMessage) -> None:
        del body  # raw bytes: the pipeline decodes and validates each record itself
        await pipeline.process_batch(message.raw_message)

    handle.__name__ = f"consume_{group_id.replace('-', '_')}"
    broker.subscriber(
        *(physical(topic, namespace) for topic in topics),
        group_id=group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        fetch_min_bytes=fetch_min_bytes,
        fetch_max_wait_ms=fetch_max_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_batch_parser,
        decoder=raw_batch_decoder,
        include_in_schema=False,  # documented per topic by ``document_subscriber``
    )(handle)


def _union(topic: str) -> Any:
    models = MESSAGES_BY_TOPIC[topic]
    return Union[tuple(models)] if len(models) > 1 else models[0]  # noqa: UP007


def document_subscriber(docs: KafkaBroker, topic: str, *, group_id: str, namespace: str) -> None:
    """Declare, on a broker that is never started, what a service reads from ``topic``.

    The real consumer reads all of a service's topics at once; declaring each topic apart
    gives the AsyncAPI document the exact message types of each one. SkipValidation keeps
    the type in the schema (FastStream's NoCast would drop it).
    """

    async def documented(body: Any) -> None:
        del body  # documentation only: never called

    documented.__annotations__ = {"body": Annotated[_union(topic), SkipValidation], "return": None}
    documented.__name__ = f"{group_id}_reads_{topic}".replace("-", "_").replace(".", "_")
    docs.subscriber(
        physical(topic, namespace),
        group_id=group_id,
        title=f"{group_id}:{topic}",
        description=TOPIC_BY_NAME[topic].description,
    )(documented)


def document_publisher(docs: KafkaBroker, topic: str, namespace: str) -> None:
    """Declare what a service publishes to ``topic`` so the AsyncAPI document shows it.

    The outbox relay publishes the bytes; this object is documentation of the contract.
    """
    docs.publisher(
        physical(topic, namespace),
        title=f"{topic}:publish",
        description=TOPIC_BY_NAME[topic].description,
        schema=_union(topic),
    )


class KafkaRelayProducer:
    """The outbox relay's producer: idempotent (no duplicates on retry), all replicas ack.

    The relay hands bytes that are already encoded straight to aiokafka; FastStream's
    publish path (middlewares, encoding) has nothing to add for them. Contract topic
    names become the namespaced ones here.
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str, namespace: str = "") -> None:
        self._namespace = namespace
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{client_id}-relay",
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            # A topic missing from the metadata fails its send after this long, not 40 s.
            request_timeout_ms=15_000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def topic_ready(self, topic: str) -> None:
        # Metadata of a known topic is cached: this costs a round trip only when it is not.
        if not await self._producer.partitions_for(physical(topic, self._namespace)):
            raise UnknownTopicOrPartitionError(topic)

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        # Returns once the record is queued; the future resolves when the broker acks.
        future: Awaitable[Any] = await self._producer.send(
            physical(topic, self._namespace),
            value,
            key=key,
            headers=[(name, text.encode()) for name, text in headers.items()],
        )
        return future
