"""Scenario 1: poison on every topic a service consumes, each record followed by a valid
message on the same key that must still take effect.

Per run (OFFRAMP_FAULT_SCALE=1): hypothesis (derandomized, 2 examples of each of 11
kinds per topic, generated before anything is published) spoils a valid message of each
of the 9 consumed topics: JSON nested 3,000-20,000 levels deep (alone, or as the
payload), values of ~800-900 KB (ASCII, 2-, 3- and 4-byte UTF-8), invalid UTF-8 spliced
in, message_id / account_id of 2-20 KB, a field of the wrong JSON type, occurred_at far
in the past or future (legal and illegal), a required field missing, an unknown type, a
JSON value that is not an object or no JSON at all, empty and null values: ~180 records,
~15 MB. Each is keyed like a real record: the workflow's key on the workflow topic, a
contact's key on the command and event topics, an exiter's key on the inbound topic that
its exit event then arrives on; then the flow runs (1 workflow, 12 enrollments, 8
exits). Required: every exit and due step as without poison; every record that the
contracts cannot decode dead-lettered by every consumer group of its topic (matched by
group, topic, partition and offset); every one they can decode (an unknown type, a
legal extreme timestamp) at least recorded, dead-lettered or in the group's inbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts import Message, decode, topics
from shared.contracts.topics import physical
from tests.conftest import SessionEnv
from tests.support.groups import CONSUMES, Groups, group_id, handled_types
from tests.support.outreach import EXIT_TOPICS, Cohort, Driver, Observed, scaled
from tests.support.poison import Expect, Poison, generate
from tests.support.system import System

pytestmark = pytest.mark.fault

CONTACT_TOPICS = (
    topics.COMMANDS,
    topics.ENROLLMENT_EVENTS,
    topics.SCHEDULER_STEPS,
    topics.MESSAGING_EVENTS,
)


@dataclass(frozen=True)
class Published:
    poison: Poison
    key: str
    partition: int
    offset: int


def poison_plan(cohort: Cohort, per_kind: int) -> list[tuple[Poison, str]]:
    """Every poison record with the key of the valid message that will follow it."""
    account = cohort.account
    plan = [
        (p, f"{account}/workflow/{cohort.definition.workflow_id}")
        for p in generate(topics.WORKFLOW_EVENTS, account, per_kind)
    ]
    for topic in CONTACT_TOPICS:
        people = cohort.everyone
        plan += [
            (p, people[n % len(people)].key(account))
            for n, p in enumerate(generate(topic, account, per_kind))
        ]
    for topic in EXIT_TOPICS:
        people = tuple(c for c in cohort.exiters if cohort.exit_topic(c) == topic)
        plan += [
            (p, people[n % len(people)].key(account))
            for n, p in enumerate(generate(topic, account, per_kind))
        ]
    return plan


def handles(service: str, poison: Poison) -> bool:
    """Whether ``service`` has a handler for the valid message ``poison`` decodes to."""
    decoded = decode(poison.value, topic=poison.topic)
    return not isinstance(decoded, Message) or decoded.type in handled_types(service)


async def publish(env: SessionEnv, plan: list[tuple[Poison, str]]) -> list[Published]:
    producer = AIOKafkaProducer(
        bootstrap_servers=env.kafka_bootstrap_servers, acks="all", max_request_size=4 * 2**20
    )
    await producer.start()
    try:
        published = []
        for poison, key in plan:
            meta = await producer.send_and_wait(
                physical(poison.topic, env.topic_namespace), poison.value, key=key.encode()
            )
            published.append(Published(poison, key, meta.partition, meta.offset))
        return published
    finally:
        await producer.stop()


async def in_inbox(env: SessionEnv, service: str, message_id: str | None) -> bool:
    if message_id is None:
        return False
    conn = await asyncpg.connect(env.database_url)
    try:
        found = await conn.fetchval(
            f"SELECT count(*) FROM {service}.inbox WHERE consumer = $1 AND message_id = $2",
            group_id(service),
            message_id,
        )
    finally:
        await conn.close()
    return bool(found)


async def unhandled(env: SessionEnv, observed: Observed, records: list[Published]) -> list[str]:
    """Each (consumer group, poison record) that did not end as it must."""
    dead = {
        (
            d["payload"]["consumer"],
            d["payload"]["source_topic"],
            d["payload"]["source_partition"],
            d["payload"]["source_offset"],
        )
        for d in observed.dead_letters
        if d.get("type") == "deadletter.recorded"
    }
    missing = []
    for record in records:
        poison = record.poison
        name = physical(poison.topic, env.topic_namespace)
        for service, read in CONSUMES.items():
            if poison.topic not in read:
                continue
            if (group_id(service), name, record.partition, record.offset) in dead:
                continue
            if poison.expect is Expect.RECORDED and await in_inbox(env, service, poison.message_id):
                continue
            if poison.expect is Expect.RECORDED and not handles(service, poison):
                continue  # a valid message of a type this service skips by design
            missing.append(
                f"{group_id(service)}: no {poison.expect.value} for {poison.describe()}"
                f" at partition {record.partition} offset {record.offset}"
            )
    return missing


async def test_poison_on_every_consumed_topic_is_dead_lettered_and_the_next_event_applies(
    system: System, driver: Driver, groups: Groups, fault_env: SessionEnv
) -> None:
    cohort = Cohort.of("acct-poison", scaled(8), scaled(4))
    plan = await asyncio.to_thread(poison_plan, cohort, scaled(2))
    records = await publish(fault_env, plan)

    await driver.apply(cohort)
    await driver.enroll(cohort, cohort.everyone)
    await driver.await_step(cohort, cohort.everyone, 0)
    await groups.caught_up("trigger_evaluator")
    await driver.trigger_exits(cohort, cohort.exiters)
    await driver.await_exits(cohort, cohort.exiters)
    await driver.await_step(cohort, cohort.controls, 1)
    await groups.settle()

    observed = await driver.observe()
    assert not (problems := observed.problems(cohort)), "\n".join(problems)
    missing = await unhandled(fault_env, observed, records)
    assert not missing, f"{len(missing)} of {len(records)} poison records:\n" + "\n".join(
        missing[:30]
    )
    assert system.crashed() == []
