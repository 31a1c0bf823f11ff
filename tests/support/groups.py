"""The services' consumer groups seen from outside: how far behind they are, whether the
system has gone quiet, and rewinding a group to the beginning (a replay)."""

from __future__ import annotations

import functools
import importlib
import json
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import Message, decode, topics
from shared.contracts.topics import TOPICS, physical
from tests.support.waiting import eventually

CONSUMES: Mapping[str, tuple[str, ...]] = {
    "enrollment": (
        topics.COMMANDS,
        topics.SCHEDULER_STEPS,
        topics.MESSAGING_EVENTS,
        topics.INBOUND_CRM,
        topics.INBOUND_EMAIL,
    ),
    "scheduler": (topics.ENROLLMENT_EVENTS,),
    "trigger_evaluator": (
        topics.INBOUND_EMAIL,
        topics.INBOUND_WEB,
        topics.INBOUND_CRM,
        topics.INBOUND_CONVERSATION,
        topics.WORKFLOW_EVENTS,
        topics.ENROLLMENT_EVENTS,
        topics.MESSAGING_EVENTS,
    ),
    "messaging": (
        topics.ENROLLMENT_EVENTS,
        topics.WORKFLOW_EVENTS,
        topics.INBOUND_CONVERSATION,
        topics.COMMANDS,
    ),
}
"""What each service reads (see each ``services/<name>/app.py``)."""


@functools.cache
def handled_types(service: str) -> frozenset[str]:
    """The message types ``service`` has a handler for; a valid message of another type on
    a topic it reads is skipped by design (messaging reads only ``message.delivery_status``
    of the conversation topic), neither applied nor dead-lettered."""
    spec = importlib.import_module(f"services.{service}.app").SPEC
    return frozenset(spec.handlers(spec.settings()))


def group_id(service: str) -> str:
    return f"offramp-{service.replace('_', '-')}"


def consumers_of(topic: str) -> list[str]:
    """The consumer groups that read ``topic``."""
    return [group_id(service) for service, read in CONSUMES.items() if topic in read]


class Groups:
    """Offsets of one namespace's topics and of the services' groups on them."""

    def __init__(self, bootstrap_servers: str, namespace: str) -> None:
        self._bootstrap = bootstrap_servers
        self._namespace = namespace

    def _partitions(self, names: tuple[str, ...]) -> list[TopicPartition]:
        by_name = {spec.name: spec.partitions for spec in TOPICS}
        return [
            TopicPartition(physical(name, self._namespace), number)
            for name in names
            for number in range(by_name[name])
        ]

    async def end_offsets(self, names: tuple[str, ...]) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None)
        await consumer.start()
        try:
            return dict(await consumer.end_offsets(self._partitions(names)))
        finally:
            await consumer.stop()

    async def lag(self, service: str) -> int:
        """Records of its topics that ``service``'s group has not committed yet."""
        partitions = self._partitions(CONSUMES[service])
        ends = await self.end_offsets(CONSUMES[service])
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group_id(service))
        finally:
            await admin.close()
        behind = 0
        for tp in partitions:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else 0
            behind += max(ends[tp] - position, 0)
        return behind

    async def caught_up(self, *services: str, timeout: float = 60.0) -> None:
        """Wait until each of ``services`` has committed everything on its topics."""
        for service in services:
            await eventually(
                functools.partial(self.lag, service),
                until=lambda behind: behind == 0,
                timeout=timeout,
                interval=0.2,
                what=f"{group_id(service)} to catch up",
            )

    async def settle(self, *, quiet_s: float = 1.5, timeout: float = 90.0) -> None:
        """Wait until every group is caught up and no topic has grown for ``quiet_s``.

        After this, whatever the services were going to publish in reaction to what is on
        the topics has been published: counts read now are final, not a passing moment.
        """
        everything = tuple(spec.name for spec in TOPICS)
        last: dict[str, object] = {"ends": None, "since": time.monotonic()}

        async def quiet() -> bool:
            lags = [await self.lag(service) for service in CONSUMES]
            ends = await self.end_offsets(everything)
            if any(lags) or ends != last["ends"]:
                last.update(ends=ends, since=time.monotonic())
                return False
            return time.monotonic() - float(last["since"]) >= quiet_s  # type: ignore[arg-type]

        await eventually(quiet, timeout=timeout, interval=0.3, what="the system to go quiet")

    async def rewind(self, service: str) -> None:
        """Commit the earliest offset of every partition ``service`` reads (a replay).

        The group must have no live member (stop the service first), as with
        ``kafka-consumer-groups --reset-offsets --to-earliest``.
        """
        partitions = self._partitions(CONSUMES[service])
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=group_id(service), enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            starts = await consumer.beginning_offsets(partitions)
            await consumer.commit({tp: starts[tp] for tp in partitions})
        finally:
            await consumer.stop()

    async def read_all(self, topic: str) -> list[dict[str, Any]]:
        """Every valid message on ``topic`` up to its end offsets at the call, as JSON.

        Like ``OfframpClient.read_all``, but only what the topic's contracts accept: the
        poison the tests publish themselves (nested too deep to parse, or shaped like a
        message type without being one) is left out instead of failing the read.
        """
        partitions = self._partitions((topic,))
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False
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
                    document
                    for tp, records in batch.items()
                    for record in records
                    if record.offset < ends[tp]
                    and (document := _valid(record.value, topic)) is not None
                )
            return found
        finally:
            await consumer.stop()


def _valid(value: bytes | None, topic: str) -> dict[str, Any] | None:
    try:
        message = decode(value, topic=topic)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, Message):
        return None
    document: dict[str, Any] = json.loads(message.to_json())
    return document
