"""Fixtures of the fault-injection suite: a private broker and database for the session
(the tests stop and start them), and per test a fresh database, topic namespace, SMTP
server and the four services as processes, with their logs kept under
``.local/fault/logs/<test>/``."""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from shared.client import OfframpClient
from tests.conftest import SessionEnv
from tests.support.fault_infra import STATE_DIR, FaultInfra
from tests.support.groups import Groups
from tests.support.isolation import (
    create_database,
    delete_topics,
    drop_database,
    new_suffix,
    with_database,
)
from tests.support.outreach import Driver
from tests.support.processes import smtp_server
from tests.support.system import System
from tests.support.waiting import eventually

LOGS = STATE_DIR / "logs"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[FAILED] = report.failed


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def fault_infra() -> FaultInfra:
    """Started once; left running like the shared infrastructure (stop it with
    ``OFFRAMP_STATE_DIR=.local/fault deploy/local/infra.sh down``)."""
    return FaultInfra.up()


@pytest.fixture
async def fault_env(fault_infra: FaultInfra) -> AsyncIterator[SessionEnv]:
    await asyncio.to_thread(fault_infra.ensure_up)  # a failed test may have left one down
    suffix = new_suffix()
    database = f"offramp_fault_{suffix}"
    namespace = f"fault-{suffix}."
    await create_database(fault_infra.database_url, database)
    try:
        yield SessionEnv(
            kafka_bootstrap_servers=fault_infra.kafka_bootstrap_servers,
            database_url=with_database(fault_infra.database_url, database),
            topic_namespace=namespace,
        )
    finally:
        await asyncio.to_thread(fault_infra.ensure_up)
        await eventually(
            functools.partial(_dropped, fault_infra.database_url, database),
            timeout=30,
            interval=0.5,
            what=f"database {database} dropped",
        )
        await delete_topics(fault_infra.kafka_bootstrap_servers, namespace)


async def _dropped(admin_url: str, database: str) -> bool:
    """Drop ``database``; False while a backend we may not end (autovacuum) still uses it."""
    try:
        await drop_database(admin_url, database)
    except asyncpg.InsufficientPrivilegeError:
        return False
    return True


@pytest.fixture
async def system(fault_env: SessionEnv, request: pytest.FixtureRequest) -> AsyncIterator[System]:
    log_dir = LOGS / request.node.name
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    with smtp_server() as (sink, smtp_port):
        env = fault_env.service_env(
            OFFRAMP_SMTP_HOST="127.0.0.1",
            OFFRAMP_SMTP_PORT=str(smtp_port),
            OFFRAMP_SEND_RETRY_BACKOFF_S="0.5",
            OFFRAMP_SEND_RETRY_BACKOFF_MAX_S="5",
        )
        running = System(env, log_dir, sink)
        try:
            await running.start_all()
            yield running
        finally:
            await running.shutdown()
            if request.node.stash.get(FAILED, True):
                print(f"service logs in {log_dir}\n{running.log_tails()}")


@pytest.fixture
async def client(fault_env: SessionEnv) -> AsyncIterator[OfframpClient]:
    async with OfframpClient(fault_env.kafka_bootstrap_servers, fault_env.topic_namespace) as c:
        yield c


@pytest.fixture
def groups(fault_env: SessionEnv) -> Groups:
    return Groups(fault_env.kafka_bootstrap_servers, fault_env.topic_namespace)


@pytest.fixture
def driver(client: OfframpClient, groups: Groups, system: System) -> Driver:
    return Driver(client, groups, system.sink)
