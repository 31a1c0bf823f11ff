"""Where only PostgreSQL can tell: an enroll racing its workflow's pause either commits
first (and the pause's sweep exits it) or waits for the pause and is refused; no
enrollment is left live in a paused workflow (``workflow_statuses`` key-share locks the
workflow row that the pause updates)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.enrollment import admission, handlers
from services.enrollment.lifecycle_handlers import change_status
from services.enrollment.ports import EnrollmentStore
from services.enrollment.repository import PostgresEnrollmentStore
from services.enrollment.sweeps import sweep_round
from shared.consumer import Handler
from shared.contracts import Message, RecordRef, RecordType, utc_now
from shared.uow import UnitOfWork
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_commands import apply_cmd, definition, enroll_cmd
from tests.support.builders.lifecycle_commands import pause_wf_cmd

pytestmark = pytest.mark.integration

ROUNDS = 60


async def run(conn: asyncpg.Connection, handler: Handler, message: Message, hold: float) -> None:
    """``handler`` on ``message`` in a transaction of its own, committed ``hold`` s later."""
    async with conn.transaction():
        uow = UnitOfWork(conn, PostgresEnrollmentStore(conn, version_cache={}))
        await handler(uow, [message], utc_now())
        await asyncio.sleep(hold)


@pytest.fixture
async def schema(test_env: SessionEnv) -> AsyncIterator[str]:
    async with migrated_schema(test_env, "enrollment") as conn:
        yield str(await conn.fetchval("SELECT current_schema()"))


async def test_an_enroll_racing_a_workflow_pause_is_swept_or_refused(
    test_env: SessionEnv, schema: str
) -> None:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})

    enroller, pauser = await connect(), await connect()
    try:
        for round_ in range(ROUNDS):
            wf = definition(0, 3600, workflow_id=f"wf-{round_}")
            await run(enroller, handlers.apply_workflows, apply_cmd(wf), 0)
            enroll = enroll_cmd(
                RecordRef(type=RecordType.CONTACT, id=f"c-{round_}"), wf.workflow_id
            )
            hold = 0.01 if round_ % 2 else 0.0  # the other transaction gets in between
            pause = pause_wf_cmd(wf.workflow_id)
            racing = [run(enroller, admission.enroll, enroll, hold)]
            racing.insert(round_ % 2, run(pauser, change_status, pause, hold))  # either first
            await asyncio.gather(*racing)
        while True:
            async with pauser.transaction():
                store: EnrollmentStore = PostgresEnrollmentStore(pauser, version_cache={})
                if await sweep_round(UnitOfWork(pauser, store), now=utc_now(), limit=500) is None:
                    break
        live = await enroller.fetchval(
            "SELECT count(*) FROM enrollments WHERE status IN ('active', 'paused')"
        )
        exited = await enroller.fetchval(
            "SELECT count(*) FROM enrollments WHERE exit_reason = 'workflow_paused'"
        )
        refused = await enroller.fetchval(
            """SELECT count(*) FROM enrollment_history WHERE event_type = 'enrollment.rejected'
                 AND detail -> 'rejections' -> 0 ->> 'code' = 'workflow_paused'"""
        )
    finally:
        await enroller.close()
        await pauser.close()
    assert live == 0
    assert exited + refused == ROUNDS
