"""Scenarios 5 and 7: a consumer group replayed from the beginning, and two accounts
that share every id.

Replay (scenario 5), per run (OFFRAMP_FAULT_SCALE=1): one account, 8 exiters and 8
controls run their whole flow (~40 messages in, ~150 published by the services); then
each service in turn is stopped, its group ``offramp-<service>`` committed back to the
earliest offset of every partition it reads, and started again, so it reads its whole
history a second time (4 replays, ~600 records re-read). Nothing may change: no record
is published again on any topic, no mail goes out again, and every table of every
service (but the inbox and outbox plumbing) holds exactly the same rows.

Accounts (scenario 7): accounts ``acct-a`` and ``acct-b`` with the same workflow id,
the same 12 record ids and email addresses, and the same message ids for their
``workflow.apply``, every ``enrollment.enroll`` and every inbound event. In A the first 6
contacts exit; in B contacts 3-8 exit; every other contact gets an email open carrying
the message id of the other account's exit event. Each account's exits must happen
exactly as if it were alone (3 contacts exit in both, 3 only in A, 3 only in B).
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from shared.client import OfframpClient
from shared.contracts import Message
from shared.contracts.topics import TOPICS
from tests.conftest import SessionEnv
from tests.support.groups import Groups
from tests.support.outreach import Cohort, Driver, contacts, scaled, workflow_definition
from tests.support.processes import SERVICES
from tests.support.system import System

pytestmark = pytest.mark.fault

PLUMBING = ("inbox", "outbox", "outbox_quarantine", "schema_migrations")


async def table_digests(database_url: str) -> dict[str, str]:
    """A digest of every row of every service table, keyed by schema.table."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'"
            " AND NOT table_name = ANY($2::text[])",
            list(SERVICES),
            list(PLUMBING),
        )
        return {
            f"{s}.{t}": await conn.fetchval(
                f"SELECT md5(coalesce(string_agg(r::text, chr(10) ORDER BY r::text), ''))"
                f' FROM "{s}"."{t}" r'
            )
            for s, t in tables
        }
    finally:
        await conn.close()


async def test_replaying_every_group_from_the_beginning_changes_and_sends_nothing(
    system: System, driver: Driver, groups: Groups, fault_env: SessionEnv
) -> None:
    cohort = Cohort.of("acct-replay", scaled(8), scaled(8))
    await driver.apply(cohort)
    await driver.enroll(cohort, cohort.everyone)
    await driver.await_step(cohort, cohort.everyone, 0)
    await groups.caught_up("trigger_evaluator")
    await driver.trigger_exits(cohort, cohort.exiters)
    await driver.await_exits(cohort, cohort.exiters)
    await driver.await_step(cohort, cohort.controls, 1)
    await groups.settle()
    offsets = await groups.end_offsets(tuple(spec.name for spec in TOPICS))
    tables = await table_digests(fault_env.database_url)
    mails = len(system.sink.messages)

    for name in SERVICES:
        await system.stop(name)
        await groups.rewind(name)
        await system.start(name)
    await groups.settle()

    observed = await driver.observe()
    assert not (problems := observed.problems(cohort)), "\n".join(problems)
    assert len(system.sink.messages) == mails
    assert await groups.end_offsets(tuple(spec.name for spec in TOPICS)) == offsets
    assert await table_digests(fault_env.database_url) == tables
    assert system.crashed() == []


async def test_two_accounts_sharing_every_id_exit_independently(
    system: System, driver: Driver, groups: Groups, client: OfframpClient
) -> None:
    people = contacts("p", scaled(12))
    quarter = len(people) // 4
    a_exiters = people[: 2 * quarter]
    b_exiters = people[quarter : 3 * quarter]
    a, b = (
        Cohort(
            account,
            tuple(exiters),
            tuple(p for p in people if p not in exiters),
            workflow_definition(label=label),
            label,
        )
        for account, exiters, label in (("acct-a", a_exiters, "A:"), ("acct-b", b_exiters, "B:"))
    )
    same = uuid.uuid5(uuid.NAMESPACE_URL, "apply")
    ids = {p.record_id: uuid.uuid5(uuid.NAMESPACE_URL, p.record_id) for p in people}
    event_ids = {
        p.record_id: uuid.uuid5(uuid.NAMESPACE_URL, f"event/{p.record_id}") for p in people
    }

    for cohort in (b, a):
        await driver.apply(cohort, same)
    for cohort in (b, a):
        await client.publish_many([cohort.enroll(p, ids[p.record_id]) for p in people])
    for cohort in (a, b):
        await driver.await_step(cohort, people, 0, timeout=45)
    await groups.caught_up("trigger_evaluator")

    def inbound(cohort: Cohort) -> list[Message]:
        return [
            cohort.exit_event(p, message_id=event_ids[p.record_id])
            if p in cohort.exiters
            else cohort.harmless_event(p, event_ids[p.record_id])
            for p in people
        ]

    await client.publish_many(inbound(b))
    await client.publish_many(inbound(a))
    for cohort in (a, b):
        await driver.await_exits(cohort, cohort.exiters, timeout=45)
        await driver.await_step(cohort, cohort.controls, 1, timeout=45)
    await groups.settle()

    observed = await driver.observe()
    assert not (problems := [*observed.problems(a), *observed.problems(b)]), "\n".join(problems)
    assert system.crashed() == []
