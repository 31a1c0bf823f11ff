"""Enrollment rules on PostgreSQL: an ``anytime`` restart through the real store, and
where only PostgreSQL can tell: two enrolls of one record into two workflows, in two
transactions at once, under a one-workflow account: one wins, the other is rejected
naming it (``lock_records``; without it both pass); two enrolls into a workflow capped
at one a day: one enters, the other waits (``lock_workflows`` in ``cap_gate``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.enrollment import admission, handlers
from services.enrollment.rules_handlers import set_exclusivity
from shared.consumer import Handler
from shared.contracts import Message, RecordRef, RecordType
from shared.contracts.enrollment_rules import Exclusivity
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.integration.test_enrollment_parking_race import run
from tests.support.builders.enrollment_commands import apply_cmd, definition, enroll_cmd
from tests.support.builders.rules_commands import exclusivity_cmd

pytestmark = pytest.mark.integration

ROUNDS = 30
ALICE_ = RecordRef(type=RecordType.CONTACT, id="alice")
BOB_ = RecordRef(type=RecordType.CONTACT, id="bob")


@pytest.fixture
async def schema(test_env: SessionEnv) -> AsyncIterator[str]:
    async with migrated_schema(test_env, "enrollment") as conn:
        yield str(await conn.fetchval("SELECT current_schema()"))


async def test_two_enrolls_of_one_record_into_two_workflows_at_once_admit_one(
    test_env: SessionEnv, schema: str
) -> None:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})

    first, second = await connect(), await connect()
    setup: list[tuple[Handler, Message]] = [
        (set_exclusivity, exclusivity_cmd(Exclusivity.ONE_WORKFLOW)),
        (handlers.apply_workflows, apply_cmd(definition(0, workflow_id="a"))),
        (handlers.apply_workflows, apply_cmd(definition(0, workflow_id="b"))),
    ]
    try:
        for handler, message in setup:
            await run(first, handler, message, 0)
        for round_ in range(ROUNDS):
            record = RecordRef(type=RecordType.CONTACT, id=f"c-{round_}")
            hold = 0.01 if round_ % 2 else 0.0  # the other transaction gets in between
            await asyncio.gather(
                run(first, admission.enroll, enroll_cmd(record, "a"), hold),
                run(second, admission.enroll, enroll_cmd(record, "b"), hold),
            )
        per_record = await first.fetch(
            """SELECT record_id, count(*) AS live FROM enrollments
               WHERE status IN ('active', 'paused') GROUP BY record_id"""
        )
        rejected = await first.fetchval(
            """SELECT count(*) FROM enrollment_history WHERE event_type = 'enrollment.rejected'
                 AND detail::text LIKE '%in_another_workflow%'"""
        )
    finally:
        await first.close()
        await second.close()
    assert sorted(r["live"] for r in per_record) == [1] * ROUNDS
    assert rejected == ROUNDS


async def test_an_anytime_enroll_restarts_a_live_enrollment_on_postgresql(
    test_env: SessionEnv, schema: str
) -> None:
    conn = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
    record = RecordRef(type=RecordType.CONTACT, id="c-1")
    try:
        wf = definition(0, 24, workflow_id="again", reenrollment="anytime")
        await run(conn, handlers.apply_workflows, apply_cmd(wf), 0)
        for _ in range(3):
            await run(conn, admission.enroll, enroll_cmd(record, "again"), 0)
        rows = await conn.fetch(
            "SELECT status, exit_reason FROM enrollments ORDER BY enrolled_at, status"
        )
    finally:
        await conn.close()
    assert sorted((r["status"], r["exit_reason"]) for r in rows) == [
        ("active", None),
        ("exited", "reenrolled"),
        ("exited", "reenrolled"),
    ]


async def test_two_enrolls_into_a_capped_workflow_at_once_admit_only_the_cap(
    test_env: SessionEnv, schema: str
) -> None:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})

    first, second = await connect(), await connect()
    try:
        for round_ in range(ROUNDS // 3):
            wf = definition(0, workflow_id=f"capped-{round_}", daily_enrollment_cap=1)
            await run(first, handlers.apply_workflows, apply_cmd(wf), 0)
            hold = 0.01 if round_ % 2 else 0.0  # the other transaction gets in between
            await asyncio.gather(
                run(first, admission.enroll, enroll_cmd(ALICE_, wf.workflow_id), hold),
                run(second, admission.enroll, enroll_cmd(BOB_, wf.workflow_id), hold),
            )
        per_workflow = await first.fetch(
            "SELECT workflow_id, count(*) AS n FROM enrollments GROUP BY workflow_id"
        )
        waiting = await first.fetchval(
            "SELECT count(*) FROM parked_enrolls WHERE release_at IS NOT NULL"
        )
    finally:
        await first.close()
        await second.close()
    assert sorted(r["n"] for r in per_workflow) == [1] * (ROUNDS // 3)
    assert waiting == ROUNDS // 3
