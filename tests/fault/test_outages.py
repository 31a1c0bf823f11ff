"""Scenario 2: the Kafka broker, then PostgreSQL, stopped under traffic and started again.

Kafka, per run (OFFRAMP_FAULT_SCALE=1): one account, 12 exiters and 12 controls. The
first half is enrolled, mailed step 0 and sent its exit events; then the second half's
enroll commands are published and the broker is stopped at once for 30 s, while the
first half's step 1 falls due (timers fire into the outbox, which cannot reach Kafka) and
enrollment, scheduler and messaging have work in flight. After the restart the second
half runs its flow. ~50 messages in, one 30 s broker outage.

PostgreSQL, same volume: the second half's enrolls and the first half's exits are
published, then PostgreSQL is stopped (fast shutdown: every connection cut) for 10 s;
every service's /readyz must answer 503 meanwhile and 200 again after the restart.

Both: the services recover by themselves (nobody restarts them), every exit happens
exactly once, every due step is mailed once, nothing twice.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.fault_infra import FaultInfra
from tests.support.groups import Groups
from tests.support.outreach import Cohort, Driver, scaled, waves
from tests.support.system import System

pytestmark = pytest.mark.fault

KAFKA_OUTAGE_S = 30
POSTGRES_OUTAGE_S = 10


async def test_a_broker_outage_of_thirty_seconds_under_traffic_loses_and_doubles_nothing(
    system: System, driver: Driver, groups: Groups, fault_infra: FaultInfra
) -> None:
    cohort = Cohort.of("acct-kafka-outage", scaled(12), scaled(12))
    await driver.apply(cohort)
    (exit_1, exit_2), (control_1, control_2) = waves(cohort.exiters, 2), waves(cohort.controls, 2)

    await driver.enroll(cohort, [*exit_1, *control_1])
    await driver.await_step(cohort, [*exit_1, *control_1], 0)
    await groups.caught_up("trigger_evaluator")
    await driver.trigger_exits(cohort, exit_1)
    await driver.enroll(cohort, [*exit_2, *control_2])
    await fault_infra.kafka_down()
    await asyncio.sleep(KAFKA_OUTAGE_S)  # the fault itself: the broker stays down this long
    await fault_infra.kafka_up()

    await driver.await_step(cohort, [*exit_2, *control_2], 0, timeout=120)
    await groups.caught_up("trigger_evaluator", timeout=120)
    await driver.trigger_exits(cohort, exit_2)
    await driver.await_exits(cohort, cohort.exiters)
    await driver.await_step(cohort, cohort.controls, 1)
    await groups.settle()

    observed = await driver.observe()
    assert not (problems := observed.problems(cohort)), "\n".join(problems)
    assert system.crashed() == []
    await system.all_answer("/readyz", 200)


async def test_a_database_outage_makes_services_unready_and_loses_and_doubles_nothing(
    system: System, driver: Driver, groups: Groups, fault_infra: FaultInfra
) -> None:
    cohort = Cohort.of("acct-pg-outage", scaled(12), scaled(12))
    await driver.apply(cohort)
    (exit_1, exit_2), (control_1, control_2) = waves(cohort.exiters, 2), waves(cohort.controls, 2)

    await driver.enroll(cohort, [*exit_1, *control_1])
    await driver.await_step(cohort, [*exit_1, *control_1], 0)
    await groups.caught_up("trigger_evaluator")
    await driver.trigger_exits(cohort, exit_1)
    await driver.enroll(cohort, [*exit_2, *control_2])
    await fault_infra.postgres_down()
    await system.all_answer("/readyz", 503, timeout=30)
    await asyncio.sleep(POSTGRES_OUTAGE_S)  # the fault itself: the database stays down
    await fault_infra.postgres_up()
    await system.all_answer("/readyz", 200, timeout=90)

    await driver.await_step(cohort, [*exit_2, *control_2], 0)
    await groups.caught_up("trigger_evaluator")
    await driver.trigger_exits(cohort, exit_2)
    await driver.await_exits(cohort, cohort.exiters)
    await driver.await_step(cohort, cohort.controls, 1)
    await groups.settle()

    observed = await driver.observe()
    assert not (problems := observed.problems(cohort)), "\n".join(problems)
    assert system.crashed() == []
