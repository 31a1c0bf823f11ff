"""The enrollment repository's bulk SQL on the real database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from services.enrollment.domain import Enrollment, Status
from services.enrollment.ports import ExitRecord, HistoryEntry, NewEnrollment
from services.enrollment.repository import EnrollmentRepository
from shared.contracts import Actor, ActorKind, RecordRef, RecordType, utc_now
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.workflow import Step, WorkflowDefinition
from shared.migrations import migrate
from tests.conftest import SessionEnv

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "enrollment" / "migrations"
ACTOR = Actor(kind=ActorKind.API, id="test")


@pytest.fixture
async def repo(test_env: SessionEnv) -> AsyncIterator[EnrollmentRepository]:
    schema = f"enr_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
    await migrate(conn, schema=schema, service_dir=MIGRATIONS)
    async with conn.transaction():
        yield EnrollmentRepository(conn)
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


def enrollment(
    account: str,
    record_id: str,
    *,
    workflow_id: str = "wf",
    enrollment_id: uuid.UUID | None = None,
) -> Enrollment:
    now = utc_now()
    return Enrollment(
        enrollment_id=enrollment_id or uuid.uuid4(),
        account_id=account,
        workflow_id=workflow_id,
        workflow_version=1,
        record=RecordRef(type=RecordType.CONTACT, id=record_id),
        status=Status.ACTIVE,
        current_step=0,
        steps_completed=0,
        enrolled_at=now,
        next_due_at=now + timedelta(hours=1),
    )


DEFINITION = WorkflowDefinition(
    workflow_id="wf",
    name="wf",
    record_type=RecordType.CONTACT,
    steps=(Step(step_id="s", body="b"),),
)


async def test_bulk_reads_and_writes_round_trip(repo: EnrollmentRepository) -> None:
    definition = DEFINITION
    for account in ("acc-a", "acc-b"):
        await repo.add_workflow_version(
            account, definition, version=1, definition_hash="h", actor=ACTOR
        )
    ours = [enrollment("acc-a", f"c-{i}") for i in range(200)]
    theirs = enrollment("acc-b", "c-0")  # the same record id in another account
    await repo.insert_enrollments([NewEnrollment(e, None, ACTOR) for e in [*ours, theirs]])

    current = await repo.current_workflows([("acc-a", "wf"), ("acc-a", "nope")])
    assert set(current) == {("acc-a", "wf")}
    live = await repo.live_enrollments_for_update([("acc-a", e.record) for e in ours[:50]])
    assert {e.enrollment_id for e in live} == {e.enrollment_id for e in ours[:50]}
    in_workflow = await repo.enrollments_in_workflows_for_update([("acc-b", "wf", theirs.record)])
    assert [e.enrollment_id for e in in_workflow] == [theirs.enrollment_id]

    exited = [
        replace(e, status=Status.EXITED, ended_at=utc_now(), exit_reason=ExitReason.REPLIED)
        for e in ours[:10]
    ]
    await repo.save_exits([ExitRecord(e, ExitSource.TRIGGER, ACTOR, None) for e in exited])
    advanced = [replace(e, current_step=1, steps_completed=1) for e in ours[10:20]]
    await repo.save_progress([*advanced, replace(advanced[0], steps_completed=2)])
    await repo.add_history(
        [
            HistoryEntry(
                "acc-a",
                "wf",
                e.record,
                "enrollment.exited",
                {"x": 1},
                e.enrollment_id,
                None,
                utc_now(),
            )
            for e in exited
        ]
    )

    live = await repo.live_enrollments_for_update([("acc-a", e.record) for e in ours[:20]])
    assert {e.enrollment_id for e in live} == {e.enrollment_id for e in ours[10:20]}
    reloaded = {
        e.enrollment_id: e
        for e in await repo.enrollments_for_update([("acc-a", e.enrollment_id) for e in ours[:20]])
    }
    assert reloaded[ours[0].enrollment_id].exit_reason is ExitReason.REPLIED
    assert reloaded[ours[10].enrollment_id].steps_completed == 2  # the last state won
    assert reloaded[ours[11].enrollment_id].current_step == 1
    # Another account's id never matches.
    assert await repo.enrollments_for_update([("acc-b", ours[0].enrollment_id)]) == []


async def test_two_accounts_with_the_same_ids_stay_apart(repo: EnrollmentRepository) -> None:
    """The same enrollment id, workflow id and record id in two accounts are two rows."""
    shared_id = uuid.uuid4()
    for account in ("acc-a", "acc-b"):
        await repo.add_workflow_version(
            account, DEFINITION, version=1, definition_hash="h", actor=ACTOR
        )
    ours = enrollment("acc-a", "c-0", enrollment_id=shared_id)
    theirs = enrollment("acc-b", "c-0", enrollment_id=shared_id)
    await repo.insert_enrollments([NewEnrollment(e, None, ACTOR) for e in (ours, theirs)])

    exited = replace(
        theirs, status=Status.EXITED, ended_at=utc_now(), exit_reason=ExitReason.REPLIED
    )
    await repo.save_exits([ExitRecord(exited, ExitSource.TRIGGER, ACTOR, None)])
    await repo.save_progress([replace(ours, current_step=1, steps_completed=1)])
    await repo.add_history(
        [
            HistoryEntry(
                "acc-b", "wf", theirs.record, "enrollment.exited", {}, shared_id, None, utc_now()
            ),
        ]
    )

    [a] = await repo.enrollments_for_update([("acc-a", shared_id)])
    [b] = await repo.enrollments_for_update([("acc-b", shared_id)])
    assert (a.account_id, a.status, a.steps_completed, a.exit_reason) == (
        "acc-a",
        Status.ACTIVE,
        1,
        None,
    )
    assert (b.account_id, b.status, b.steps_completed, b.exit_reason) == (
        "acc-b",
        Status.EXITED,
        0,
        ExitReason.REPLIED,
    )
    live = await repo.live_enrollments_for_update([("acc-a", ours.record), ("acc-b", ours.record)])
    assert [(e.account_id, e.enrollment_id) for e in live] == [("acc-a", shared_id)]
    in_workflow = await repo.enrollments_in_workflows_for_update([("acc-b", "wf", ours.record)])
    assert [(e.account_id, e.status) for e in in_workflow] == [("acc-b", Status.EXITED)]
