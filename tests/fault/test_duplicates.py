"""Scenario 6: every inbound message published 1-5 times, in shuffled order, ends in the
same state as publishing each once.

Per run (OFFRAMP_FAULT_SCALE=1): two accounts with the same 10 exiters and 10 controls
each. Account ``acct-once`` gets every enroll command and every inbound event once;
``acct-dups`` gets the same messages (same message ids) 1-5 times each (random.Random(6)),
shuffled across keys: 20 enrolls, 10 exit events (a reply, a page visit, a booked meeting
or a chat message), 10 further replies from the exiters and 10 email opens of the
controls, i.e. 50 messages sent once and ~150 with their duplicates. No fault besides the
duplicates. Both accounts must end with the same counts per enrollment: one exit per
exiter, none for controls, each due step mailed once.
"""

from __future__ import annotations

import random

import pytest

from shared.client import OfframpClient
from shared.contracts import Message, topics
from tests.support.groups import Groups
from tests.support.outreach import Cohort, Driver, Observed, scaled
from tests.support.system import System

pytestmark = pytest.mark.fault


def inbound(cohort: Cohort) -> list[Message]:
    """Each exiter's own exit event and a reply, each control's email open."""
    return [
        *(cohort.exit_event(c) for c in cohort.exiters),
        *(cohort.exit_event(c, topics.INBOUND_EMAIL) for c in cohort.exiters),
        *(cohort.harmless_event(c) for c in cohort.controls),
    ]


def repeated(messages: list[Message], rng: random.Random) -> list[Message]:
    copies = [m for m in messages for _ in range(rng.randint(1, 5))]
    rng.shuffle(copies)
    return copies


def summary(observed: Observed, cohort: Cohort) -> dict[str, object]:
    return {
        "exits": observed.exits(cohort.account),
        "enrolled": observed.enrolled(cohort.account),
        "sent": observed.sent(cohort.account),
        "mails": {
            (c.record_id, step): observed.mails_to(c, cohort.subject(step))
            for c in cohort.everyone
            for step in range(3)
        },
    }


async def test_inbound_messages_repeated_and_shuffled_end_as_if_each_came_once(
    system: System, driver: Driver, groups: Groups, client: OfframpClient
) -> None:
    rng = random.Random(6)
    once = Cohort.of("acct-once", scaled(10), scaled(10), label="once:")
    dups = Cohort.of("acct-dups", scaled(10), scaled(10), label="dups:")
    for cohort in (once, dups):
        await driver.apply(cohort)

    await client.publish_many([once.enroll(c) for c in once.everyone])
    await client.publish_many(repeated([dups.enroll(c) for c in dups.everyone], rng))
    for cohort in (once, dups):
        await driver.await_step(cohort, cohort.everyone, 0)
    await groups.caught_up("trigger_evaluator")

    await client.publish_many(inbound(once))
    await client.publish_many(repeated(inbound(dups), rng))
    for cohort in (once, dups):
        await driver.await_exits(cohort, cohort.exiters)
        await driver.await_step(cohort, cohort.controls, 1)
    await groups.settle()

    observed = await driver.observe()
    assert not (problems := observed.problems(once)), "\n".join(problems)
    assert not (problems := observed.problems(dups)), "\n".join(problems)
    assert summary(observed, dups) == summary(observed, once)
    assert system.crashed() == []
