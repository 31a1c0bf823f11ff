"""``offramp deadletters`` on the real broker: listing selects by each filter, replay
republishes the original bytes, key and headers with ``offramp-replay-of``, and an original
the dead letter kept only in part is read back from its source coordinates."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from shared.client import RawRecord
from shared.contracts import topics, utc_now
from shared.contracts.events import DeadLettered
from shared.deadletters import REPLAY_HEADER
from tests.conftest import SessionEnv
from tests.support.deadletters import dead_letter
from tests.support.kafka import TopicClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LARGE = b'{"pad": "' + b"x" * 300_000 + b'"}'
BINARY_HEADER = b"\xff\x01"


@dataclass(frozen=True)
class World:
    """A private namespace with original records and the dead letters written for them."""

    bootstrap: str
    namespace: str
    source: str
    letters: dict[str, DeadLettered]
    originals: dict[str, RawRecord]

    def ids(self, *names: str) -> set[str]:
        return {str(self.letters[name].message_id) for name in names}


@pytest.fixture(scope="module")
async def world(test_env: SessionEnv) -> AsyncIterator[World]:
    bootstrap = test_env.kafka_bootstrap_servers
    namespace = f"{test_env.topic_namespace}dl{uuid.uuid4().hex[:6]}."
    source = f"{namespace}{topics.COMMANDS}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await admin.create_topics(
            [
                NewTopic(f"{namespace}{topics.DEAD_LETTER}", 3, 1),
                NewTopic(source, 2, 1),
            ]
        )
        originals: dict[str, RawRecord] = {}

        async def original(
            name: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]], partition: int
        ) -> None:
            written = await producer.send_and_wait(
                source, value, key=key, headers=headers, partition=partition
            )
            originals[name] = RawRecord(
                source, partition, written.offset, 0, key, value, tuple(headers)
            )

        await original(
            "valid",
            b'{"type": "enrollment.enroll", "account_id": "acme"}',
            b"acme/contact/c-1",
            [("message-type", b"enrollment.enroll"), ("trace", b"t-1")],
            0,
        )
        await original(
            "binary", b"\xff\xfe\x00not utf-8", b"acme/contact/c-2", [("bin", BINARY_HEADER)], 0
        )
        await original("large", LARGE, b"beta/contact/c-3", [("trace", b"t-3")], 0)
        await original("expired", b'{"gone": true}', b"beta/contact/c-4", [], 1)
        expired = originals["expired"]
        # What retention does: the partition's log now starts after the record.
        await admin.delete_records(
            {TopicPartition(source, 1): RecordsToDelete(before_offset=expired.offset + 1)}
        )

        now = utc_now()
        letters = {
            "valid": dead_letter(
                source_topic=source,
                offset=originals["valid"].offset,
                value=originals["valid"].value or b"",
                key=originals["valid"].key,
                headers={"message-type": "enrollment.enroll", "trace": "t-1"},
                consumer="offramp-enrollment",
                account="acme",
                kind="invalid_message",
                occurred_at=now - timedelta(hours=3),
            ),
            "binary": dead_letter(
                source_topic=source,
                offset=originals["binary"].offset,
                value=originals["binary"].value or b"",
                key=originals["binary"].key,
                headers={"bin": "b64:" + base64.b64encode(BINARY_HEADER).decode()},
                consumer="offramp-trigger-evaluator",
                account="unknown",
                kind="invalid_json",
                reason="value is not JSON: Expecting value: line 1 column 1 (char 0)",
                occurred_at=now - timedelta(minutes=30),
            ),
            "large": dead_letter(
                source_topic=source,
                offset=originals["large"].offset,
                value=LARGE[:1000],
                key=originals["large"].key,
                headers={"trace": "t-3"},
                consumer="offramp-enrollment",
                account="beta",
                kind="rejected",
                occurred_at=now - timedelta(minutes=1),
                original_truncated=True,
                original_size=len(LARGE),
            ),
            "expired": dead_letter(
                source_topic=source,
                partition=1,
                offset=expired.offset,
                value=b'{"gone"',
                key=expired.key,
                consumer="offramp-scheduler",
                account="beta",
                kind="processing_failed",
                occurred_at=now - timedelta(days=2),
                original_truncated=True,
                original_size=len(expired.value or b""),
            ),
        }
        async with TopicClient(bootstrap, namespace) as client:
            # A relay may publish one dead letter twice; the topic may hold foreign records.
            await client.publish_many([*letters.values(), letters["valid"]])
            await client.publish_raw(topics.DEAD_LETTER, b"not a dead letter", key="x")
        yield World(bootstrap, namespace, source, letters, originals)
    finally:
        await producer.stop()
        await admin.close()


async def offramp(world: World, *args: str) -> tuple[int, str, str]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": world.bootstrap, "OFFRAMP_TOPIC_NAMESPACE": world.namespace}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.cli",
        *args,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def listed(world: World, *filters: str) -> set[str]:
    code, out, err = await offramp(world, "deadletters", "list", "--json", *filters)
    assert code == 0, err
    return {json.loads(line)["message_id"] for line in out.splitlines()}


async def replays_of(world: World, dead_letter_id: uuid.UUID) -> list[RawRecord]:
    async with TopicClient(world.bootstrap, world.namespace) as client:
        records = await client.read_records(topics.COMMANDS)
    return [r for r in records if (REPLAY_HEADER, str(dead_letter_id).encode()) in r.headers]


async def test_list_selects_by_each_filter_and_shows_each_dead_letter_once(world: World) -> None:
    cases = {
        (): world.ids("valid", "binary", "large", "expired"),
        ("--consumer", "offramp-enrollment"): world.ids("valid", "large"),
        ("--account", "beta"): world.ids("large", "expired"),
        ("--kind", "invalid_json"): world.ids("binary"),
        ("--since", "1h"): world.ids("binary", "large"),
        ("--until", "1h"): world.ids("valid", "expired"),
        ("--since", "4h", "--until", "1h"): world.ids("valid"),
        ("--account", "beta", "--kind", "rejected"): world.ids("large"),
        ("--consumer", "nobody"): set(),
    }
    found = await asyncio.gather(*(listed(world, *filters) for filters in cases))
    assert dict(zip(cases, found, strict=True)) == cases


async def test_list_prints_a_table_and_a_count(world: World) -> None:
    code, out, _ = await offramp(world, "deadletters", "list", "--account", "acme")
    assert code == 0
    header, row, count = out.splitlines()
    assert header.split()[:4] == ["time", "(UTC)", "id", "consumer"]
    valid = world.letters["valid"]
    assert str(valid.message_id) in row
    assert "offramp-enrollment" in row
    assert f"{world.source}[0]@{world.originals['valid'].offset}" in row
    assert "invalid_message" in row
    assert count.startswith("1 dead letter(s) (1 record(s) on the topic were not readable")


async def test_a_bad_time_is_refused_with_the_accepted_forms(world: World) -> None:
    code, _, err = await offramp(world, "deadletters", "list", "--since", "yesterday")
    assert code == 2
    assert "30m, 2h, 7d" in err


async def test_replay_refuses_to_run_without_a_selector(world: World) -> None:
    code, _, err = await offramp(world, "deadletters", "replay")
    assert code == 2
    assert "--all" in err


async def test_a_dry_run_lists_what_would_be_replayed_and_sends_nothing(world: World) -> None:
    async with TopicClient(world.bootstrap, world.namespace) as client:
        before = len(await client.read_records(topics.COMMANDS))
    code, out, _ = await offramp(world, "deadletters", "replay", "--all", "--dry-run")
    async with TopicClient(world.bootstrap, world.namespace) as client:
        after = len(await client.read_records(topics.COMMANDS))
    assert after == before
    assert code == 1  # the expired one cannot be replayed
    assert out.count("  would replay  ") == 3
    assert "would replay 3, skipped 1, of 4 selected" in out


async def test_replay_republishes_the_original_bytes_key_and_headers(world: World) -> None:
    valid, binary = world.letters["valid"], world.letters["binary"]
    code, out, err = await offramp(
        world,
        "deadletters",
        "replay",
        "--id",
        str(valid.message_id),
        "--id",
        str(binary.message_id),
    )
    assert code == 0, out + err
    assert "replayed 2, skipped 0, of 2 selected" in out
    for name, letter in (("valid", valid), ("binary", binary)):
        original = world.originals[name]
        [replayed] = await replays_of(world, letter.message_id)
        assert replayed.value == original.value
        assert replayed.key == original.key
        assert replayed.headers == (
            *original.headers,
            (REPLAY_HEADER, str(letter.message_id).encode()),
        )


async def test_a_truncated_original_is_replayed_from_its_source_coordinates(
    world: World,
) -> None:
    large = world.letters["large"]
    code, out, err = await offramp(world, "deadletters", "replay", "--kind", "rejected")
    assert code == 0, out + err
    [replayed] = await replays_of(world, large.message_id)
    assert replayed.value == LARGE
    assert replayed.key == world.originals["large"].key
    assert replayed.headers == (("trace", b"t-3"), (REPLAY_HEADER, str(large.message_id).encode()))


async def test_an_original_past_retention_is_reported_not_replayable(world: World) -> None:
    expired = world.letters["expired"]
    code, out, _ = await offramp(world, "deadletters", "replay", "--consumer", "offramp-scheduler")
    assert code == 1
    assert "skipped" in out
    assert "no longer on" in out
    assert "replayed 0, skipped 1, of 1 selected" in out
    assert await replays_of(world, expired.message_id) == []


async def test_an_unknown_id_is_reported(world: World) -> None:
    unknown = uuid.uuid4()
    code, out, _ = await offramp(world, "deadletters", "replay", "--id", str(unknown))
    assert code == 1
    assert f"{unknown}  skipped  no such dead letter" in out
