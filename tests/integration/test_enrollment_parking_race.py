"""Where only PostgreSQL can tell: an enroll parked while its workflow's apply commits in
another transaction is never left behind (``lock_workflows``; without it this fails)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.enrollment import admission, handlers
from services.enrollment.repository import PostgresEnrollmentStore
from shared.consumer import Handler
from shared.contracts import Message, RecordRef, RecordType, utc_now
from shared.uow import UnitOfWork
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_commands import apply_cmd, definition, enroll_cmd

pytestmark = pytest.mark.integration


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


async def test_an_enroll_racing_its_apply_is_enrolled_every_time(
    test_env: SessionEnv, schema: str
) -> None:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})

    enroller, applier = await connect(), await connect()
    try:
        for round_ in range(40):
            wf = definition(0, workflow_id=f"wf-{round_}")
            enroll = enroll_cmd(
                RecordRef(type=RecordType.CONTACT, id=f"c-{round_}"), wf.workflow_id
            )

            hold = 0.01 if round_ % 2 else 0.0  # the other transaction gets in between
            await asyncio.gather(
                run(enroller, admission.enroll, enroll, hold),
                run(applier, handlers.apply_workflows, apply_cmd(wf), hold),
            )
        enrolled = await enroller.fetchval("SELECT count(*) FROM enrollments")
        parked = await enroller.fetchval("SELECT count(*) FROM parked_enrolls")
    finally:
        await enroller.close()
        await applier.close()
    assert (enrolled, parked) == (40, 0)
