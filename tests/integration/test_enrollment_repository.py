"""What only the PostgreSQL enrollment store does: row locks and the version cache.

Everything both stores do is the contract (tests/contract/test_enrollment_store.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest

from services.enrollment.domain import (
    Admitted,
    ScheduledStep,
    VersionApplied,
    WorkflowVersion,
    definition_hash,
)
from services.enrollment.repository import PostgresEnrollmentStore
from shared.contracts import Actor, ActorKind
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_domain import ACCOUNT, CONTACT, NOW, definition, enrollment

pytestmark = pytest.mark.integration

ACTOR = Actor(kind=ActorKind.API, id="test")
WF = definition(0, 3600)


@dataclass
class Two:
    """Two connections on one migrated schema: the store's, and another transaction's."""

    conn: asyncpg.Connection
    other: asyncpg.Connection

    def store(
        self, cache: dict[tuple[str, str, int], WorkflowVersion] | None = None
    ) -> PostgresEnrollmentStore:
        return PostgresEnrollmentStore(self.conn, version_cache={} if cache is None else cache)


@pytest.fixture
async def two(test_env: SessionEnv) -> AsyncIterator[Two]:
    async with migrated_schema(test_env, "enrollment") as conn:
        schema = await conn.fetchval("SELECT current_schema()")
        other = await asyncpg.connect(
            test_env.database_url, server_settings={"search_path": schema}
        )
        try:
            yield Two(conn, other)
        finally:
            await other.close()


async def given_one_enrollment(two: Two) -> Admitted:
    store = two.store()
    await store.add_workflow_versions([VersionApplied(ACCOUNT, WF, 1, definition_hash(WF), ACTOR)])
    active = enrollment(enrolled_at=NOW, next_due_at=NOW + timedelta(hours=1))
    new = Admitted(active, ScheduledStep(0, WF.steps[0], NOW), None, ACTOR)
    await store.insert_enrollments([new])
    return new


async def locked_elsewhere(two: Two, statement: str) -> bool:
    try:
        async with two.other.transaction():
            await two.other.execute(statement)
    except asyncpg.LockNotAvailableError:
        return True
    return False


async def test_a_run_holds_its_records_live_enrollments_until_it_commits(two: Two) -> None:
    await given_one_enrollment(two)
    lock = "SELECT 1 FROM enrollments FOR UPDATE NOWAIT"

    async with two.conn.transaction():
        await two.store().live_enrollments_for_update([(ACCOUNT, CONTACT)])
        assert await locked_elsewhere(two, lock)

    assert not await locked_elsewhere(two, lock)


async def test_an_enroll_run_holds_the_records_enrollments_in_the_workflow(two: Two) -> None:
    new = await given_one_enrollment(two)
    lock = "SELECT 1 FROM enrollments FOR UPDATE NOWAIT"

    async with two.conn.transaction():
        found = await two.store().enrollments_in_workflows_for_update(
            [(ACCOUNT, "onboarding", CONTACT)]
        )
        assert [e.enrollment_id for e in found] == [new.enrollment.enrollment_id]
        assert await locked_elsewhere(two, lock)


async def test_a_send_run_holds_its_enrollments(two: Two) -> None:
    new = await given_one_enrollment(two)

    async with two.conn.transaction():
        await two.store().enrollments_for_update([(ACCOUNT, new.enrollment.enrollment_id)])
        assert await locked_elsewhere(two, "SELECT 1 FROM enrollments FOR UPDATE NOWAIT")


async def test_an_apply_run_holds_its_workflows_until_it_commits(
    two: Two,
) -> None:
    await given_one_enrollment(two)
    lock = "SELECT 1 FROM workflows FOR UPDATE NOWAIT"

    async with two.conn.transaction():
        heads = await two.store().workflow_heads([(ACCOUNT, "onboarding")])
        assert heads == {(ACCOUNT, "onboarding"): (1, definition_hash(WF))}
        assert await locked_elsewhere(two, lock)

    assert not await locked_elsewhere(two, lock)


async def test_a_version_once_read_is_kept_by_the_process(two: Two) -> None:
    """Versions never change once written: a store reads each one once per process."""
    await given_one_enrollment(two)
    cache: dict[tuple[str, str, int], WorkflowVersion] = {}
    key = (ACCOUNT, "onboarding", 1)
    assert list(await two.store(cache).workflow_versions([key])) == [key]

    # Gone from the table (as no version ever is), the version is still known.
    await two.conn.execute("DELETE FROM enrollments")
    await two.conn.execute("DELETE FROM workflow_versions")

    assert (await two.store(cache).workflow_versions([key]))[key].definition == WF
    assert await two.store().workflow_versions([key]) == {}
