"""``RulesStore`` (part of ``EnrollmentStore``): the fake and PostgreSQL behave alike:
exclusivity, record locks, the daily cap's counts and waiting enrolls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from services.enrollment.domain import Admitted, ScheduledStep, VersionApplied, definition_hash
from services.enrollment.ports import EnrollmentStore, ParkedEnroll
from services.enrollment.repository import PostgresEnrollmentStore
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.enrollment_rules import Exclusivity
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_commands import enroll_cmd
from tests.support.builders.enrollment_domain import NOW, definition, enrollment
from tests.support.fakes.enrollment import FakeEnrollmentStore

pytestmark = pytest.mark.integration

ACTOR = Actor(kind=ActorKind.API, id="test")
WF = definition(0, 3600, workflow_id="wf")


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[EnrollmentStore]:
    if request.param == "fake":
        yield FakeEnrollmentStore()
        return
    async with migrated_schema(test_env, "enrollment") as conn:
        yield PostgresEnrollmentStore(conn, version_cache={})


async def test_an_account_without_a_setting_has_no_limit(store: EnrollmentStore) -> None:
    assert await store.account_exclusivity(["acc-a", "acc-b"]) == {
        "acc-a": Exclusivity.NO_LIMIT,
        "acc-b": Exclusivity.NO_LIMIT,
    }
    assert await store.account_exclusivity([]) == {}


async def test_the_last_setting_of_an_account_wins_and_stays_its_own(
    store: EnrollmentStore,
) -> None:
    await store.set_account_exclusivity("acc-a", Exclusivity.ONE_WORKFLOW)
    await store.set_account_exclusivity("acc-a", Exclusivity.ONE_EXCLUSIVE_WORKFLOW)

    assert await store.account_exclusivity(["acc-a", "acc-b", "acc-a"]) == {
        "acc-a": Exclusivity.ONE_EXCLUSIVE_WORKFLOW,
        "acc-b": Exclusivity.NO_LIMIT,
    }


async def test_records_can_be_locked_twice_in_one_transaction(store: EnrollmentStore) -> None:
    alice = RecordRef(type=RecordType.CONTACT, id="c-1")
    bob = RecordRef(type=RecordType.CONTACT, id="c-2")

    await store.lock_records([("acc-a", bob), ("acc-a", alice), ("acc-a", bob)])
    await store.lock_records([("acc-a", alice)])
    await store.lock_records([])

    assert await store.account_exclusivity(["acc-a"]) == {"acc-a": Exclusivity.NO_LIMIT}


def parked(record_id: str, at: datetime, release_at: datetime | None) -> ParkedEnroll:
    command = enroll_cmd(RecordRef(type=RecordType.CONTACT, id=record_id), "wf", "acc-a")
    return ParkedEnroll(command, at, release_at)


async def test_enrolls_waiting_for_the_cap_are_released_oldest_first_and_only_then(
    store: EnrollmentStore,
) -> None:
    later = parked("c-1", NOW + timedelta(minutes=5), NOW + timedelta(days=1))
    earlier = parked("c-2", NOW, NOW + timedelta(days=1))
    for_workflow = parked("c-3", NOW - timedelta(days=9), None)
    await store.park_enrolls([later, earlier, for_workflow])

    assert await store.waiting_for_cap([("acc-a", "wf"), ("acc-a", "other")]) == {("acc-a", "wf")}
    assert await store.take_released(now=NOW + timedelta(hours=23), limit=10) == []
    assert await store.take_parked([("acc-a", "wf")]) == [for_workflow.command]
    assert await store.take_expired_parked(parked_before=NOW + timedelta(days=9), limit=9) == []

    released = await store.take_released(now=NOW + timedelta(days=1), limit=10)

    assert released == [(earlier.command, earlier.parked_at), (later.command, later.parked_at)]
    assert await store.waiting_for_cap([("acc-a", "wf")]) == set()


async def test_a_workflows_enrollments_since_a_time_are_counted(store: EnrollmentStore) -> None:
    await store.add_workflow_versions([VersionApplied("acc-a", WF, 1, definition_hash(WF), ACTOR)])
    for n, at in enumerate([NOW - timedelta(hours=1), NOW, NOW + timedelta(hours=2)]):
        e = enrollment(
            account_id="acc-a",
            record=RecordRef(type=RecordType.CONTACT, id=f"c-{n}"),
            workflow_id="wf",
            enrolled_at=at,
            next_due_at=at,
        )
        await store.insert_enrollments(
            [Admitted(e, ScheduledStep(0, WF.steps[0], at), None, ACTOR)]
        )

    counts = await store.enrolled_since([("acc-a", "wf", NOW), ("acc-b", "wf", NOW)])

    assert counts == {("acc-a", "wf"): 2, ("acc-b", "wf"): 0}
