"""Scenarios 3 and 4: processes that die or come and go mid-stream.

Kill (scenario 3), per run (OFFRAMP_FAULT_SCALE=1): one account, 16 exiters and 16
controls enrolled in 4 waves; in wave k, once its first step 0 is mailed (its other
sends, and the previous wave's exits, still in flight), service k (enrollment, scheduler,
trigger-evaluator, messaging) is killed with SIGKILL and started again. ~100 messages in
(32 enrolls, 16 exit events, 1 workflow), 4 kill -9. Every exit must happen exactly once
and every due step be mailed at most once (once for controls), except a send messaging
re-sent after its own kill, counted and logged (SMTP cannot tell it took the first).

Replicas (scenario 4), same volume in 5 waves: in wave k a second process of service k
joins (the group rebalances) and the second process of service k-1 leaves gracefully
(rebalances again), so each service runs two replicas for about one wave. 8 rebalances.
Same assertions.
"""

from __future__ import annotations

import pytest

from tests.support.groups import Groups
from tests.support.outreach import Cohort, Driver, run_in_waves, scaled
from tests.support.processes import SERVICES
from tests.support.system import System

pytestmark = pytest.mark.fault


async def test_each_service_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    system: System, driver: Driver, groups: Groups
) -> None:
    cohort = Cohort.of("acct-kill", scaled(16), scaled(16))
    await driver.apply(cohort)

    async def kill_and_restart(wave: int) -> None:
        await system.kill9(SERVICES[wave])
        await system.start(SERVICES[wave])

    await run_in_waves(driver, groups, cohort, len(SERVICES), kill_and_restart)

    observed = await driver.observe()
    # Killed between its provider calls and their record, messaging sends those again over
    # SMTP (which cannot say it took them): each such re-send is counted and logged, and
    # only those may reach the server twice.
    resent = {
        e["provider_message_id"] for e in system.logged("messaging", "send_resent_after_crash")
    }
    problems = observed.problems(cohort, resent_after_crash=resent)
    assert not problems, "\n".join(problems)
    assert system.crashed() == []


async def test_a_second_replica_of_each_service_joining_and_leaving_mid_stream(
    system: System, driver: Driver, groups: Groups
) -> None:
    cohort = Cohort.of("acct-replicas", scaled(16), scaled(16))
    await driver.apply(cohort)

    async def rebalance(wave: int) -> None:
        if wave > 0:
            await system.remove_replica(SERVICES[wave - 1])
        if wave < len(SERVICES):
            await system.start(SERVICES[wave])

    await run_in_waves(driver, groups, cohort, len(SERVICES) + 1, rebalance)

    observed = await driver.observe()
    assert not (problems := observed.problems(cohort)), "\n".join(problems)
    assert system.crashed() == []
