"""Every background loop is supervised: restarted when it fails, given up (and the
process no longer alive) when it keeps failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared import runtime as runtime_module
from shared.runtime import ServiceRuntime, ServiceSpec
from shared.settings import ServiceSettings
from tests.support.waiting import eventually

pytestmark = pytest.mark.unit


@pytest.fixture
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RESTART_BACKOFF_INITIAL_S", 0.001)
    monkeypatch.setattr(runtime_module, "RESTART_BACKOFF_MAX_S", 0.002)


def a_runtime(gave_up: list[bool]) -> ServiceRuntime[ServiceSettings, None]:
    spec: ServiceSpec[ServiceSettings, None] = ServiceSpec(
        name="supervised",
        schema="supervised",
        description="",
        migrations_dir=Path(),
        consumes=(),
        publishes=(),
        settings=ServiceSettings,
        store=lambda _conn: None,
        handlers=lambda _settings: {},
    )
    return ServiceRuntime(
        spec=spec,
        settings=ServiceSettings(),
        broker=None,  # type: ignore[arg-type]  # supervision never touches the broker
        give_up=lambda: gave_up.append(True),
    )


async def test_a_loop_that_fails_a_few_times_is_restarted_and_the_service_stays_alive(
    quick_restarts: None,
) -> None:
    gave_up: list[bool] = []
    runtime = a_runtime(gave_up)
    runs = 0
    steady = asyncio.Event()

    async def flaky_loop() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RuntimeError(f"crash {runs}")
        steady.set()
        await asyncio.Event().wait()  # runs for the life of the service

    runtime._supervise("flaky", flaky_loop)
    await asyncio.wait_for(steady.wait(), timeout=5)
    alive = runtime.alive()
    await runtime.stop()
    assert (runs, runtime.loop_restarts, alive, gave_up) == (4, {"flaky": 3}, True, [])


async def test_a_loop_that_keeps_failing_is_given_up_and_the_process_is_not_alive(
    quick_restarts: None,
) -> None:
    gave_up: list[bool] = []
    runtime = a_runtime(gave_up)

    async def broken_loop() -> None:
        raise RuntimeError("always")

    runtime._supervise("broken", broken_loop)
    await eventually(lambda: asyncio.sleep(0, gave_up), what="the loop given up", timeout=5)
    await runtime.stop()
    assert runtime.failed_loops == ["broken"]
    assert runtime.loop_restarts["broken"] == runtime_module.GIVE_UP_AFTER_CRASHES
    assert runtime.alive() is False


async def test_a_loop_that_returns_is_started_again(quick_restarts: None) -> None:
    runtime = a_runtime([])
    runs = 0
    again = asyncio.Event()

    async def returning_loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            again.set()
            await asyncio.Event().wait()

    runtime._supervise("returning", returning_loop)
    await asyncio.wait_for(again.wait(), timeout=5)
    await runtime.stop()
    assert runs == 2


async def test_stopping_lets_a_loop_finish_the_round_in_hand(quick_restarts: None) -> None:
    runtime = a_runtime([])
    rounds: list[str] = []
    in_round, provider_answered = asyncio.Event(), asyncio.Event()

    async def sending_loop() -> None:
        while not runtime.stopping.is_set():
            in_round.set()
            await provider_answered.wait()  # a provider call under way, then the commit
            rounds.append("committed")

    runtime._supervise("sender", sending_loop, drain=True)
    await asyncio.wait_for(in_round.wait(), timeout=5)
    stopping = asyncio.create_task(runtime.stop())
    await asyncio.sleep(0)  # stop() has begun and waits for the loop
    provider_answered.set()
    await stopping
    assert rounds == ["committed"], "the round in hand was not cancelled"
    assert runtime.loop_restarts == {}, "a loop that returns on stop is not restarted"
