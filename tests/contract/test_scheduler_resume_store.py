"""``SchedulerStore``'s resume timers (timed pauses): the fake and PostgreSQL behave alike."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler.domain import TimedPause
from services.scheduler.ports import SchedulerStore
from services.scheduler.repository import PostgresSchedulerStore
from shared.contracts import RecordRef, RecordType
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.fakes.scheduler import FakeSchedulerStore

pytestmark = pytest.mark.integration

ACCOUNT = "acc"
OTHER = "other-acc"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
FAR = NOW + timedelta(days=3650)


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[SchedulerStore]:
    if request.param == "fake":
        yield FakeSchedulerStore()
        return
    async with migrated_schema(test_env, "scheduler") as conn:
        yield PostgresSchedulerStore(conn)


def pause(
    until: datetime,
    *,
    enrollment_id: uuid.UUID | None = None,
    account: str = ACCOUNT,
    pause_id: uuid.UUID | None = None,
) -> TimedPause:
    return TimedPause(
        account_id=account,
        enrollment_id=enrollment_id or uuid.uuid4(),
        pause_id=pause_id or uuid.uuid4(),
        workflow_id="wf",
        record=RecordRef(type=RecordType.CONTACT, id="c-1"),
        until=until,
        correlation_id=uuid.uuid4(),
    )


async def test_due_resumes_fire_once_earliest_first_as_they_were_armed(
    store: SchedulerStore,
) -> None:
    later, sooner, future = (
        pause(NOW - timedelta(seconds=1)),
        pause(NOW - timedelta(hours=1)),
        pause(NOW + timedelta(hours=1)),
    )
    await store.arm_resumes([later, sooner, future])

    first = await store.fire_due_resumes(now=NOW, limit=1)
    second = await store.fire_due_resumes(now=NOW, limit=10)

    assert (first, second) == ([sooner], [later])
    assert await store.fire_due_resumes(now=NOW, limit=10) == []
    assert await store.fire_due_resumes(now=FAR, limit=10) == [future]


async def test_a_pause_armed_again_changes_nothing_pending_or_fired(
    store: SchedulerStore,
) -> None:
    fired, waiting = pause(NOW), pause(NOW + timedelta(hours=1))
    await store.arm_resumes([fired, waiting])
    assert await store.fire_due_resumes(now=NOW, limit=10) == [fired]

    moved = dataclasses.replace(waiting, until=NOW)  # same pause, another time: ignored
    await store.arm_resumes([fired, moved])

    assert await store.fire_due_resumes(now=NOW, limit=10) == []
    assert await store.fire_due_resumes(now=FAR, limit=10) == [waiting]


async def test_dropping_forgets_pending_resumes_only_of_those_enrollments(
    store: SchedulerStore,
) -> None:
    enrollment_id = uuid.uuid4()
    fired = pause(NOW, enrollment_id=enrollment_id)
    await store.arm_resumes([fired])
    await store.fire_due_resumes(now=NOW, limit=10)
    waiting = pause(NOW + timedelta(hours=1), enrollment_id=enrollment_id)
    theirs = pause(NOW + timedelta(hours=1), enrollment_id=enrollment_id, account=OTHER)
    kept = pause(NOW + timedelta(hours=1))
    await store.arm_resumes([waiting, theirs, kept])

    dropped = await store.drop_resumes({(ACCOUNT, enrollment_id)})

    assert dropped == {(ACCOUNT, enrollment_id): 1}
    assert await store.drop_resumes({(ACCOUNT, enrollment_id)}) == {}
    remaining = await store.fire_due_resumes(now=FAR, limit=10)
    assert sorted(p.account_id for p in remaining) == [ACCOUNT, OTHER]
    assert {p.pause_id for p in remaining} == {theirs.pause_id, kept.pause_id}


async def test_cancelling_an_enrollment_s_timers_forgets_its_pending_resume(
    store: SchedulerStore,
) -> None:
    stopped, kept = pause(NOW), pause(NOW)
    await store.arm_resumes([stopped, kept])

    await store.cancel_pending({stopped.enrollment: "exited"})

    assert await store.fire_due_resumes(now=FAR, limit=10) == [kept]
    # A pause armed again after it was forgotten waits again (a replay after a resume is
    # then refused by enrollment: the pause it names is over).
    await store.arm_resumes([stopped])
    assert await store.fire_due_resumes(now=FAR, limit=10) == [stopped]
