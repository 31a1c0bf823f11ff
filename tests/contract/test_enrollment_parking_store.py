"""``EnrollmentStore``'s parked enrolls: the fake and PostgreSQL behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from services.enrollment.ports import EnrollmentStore, ParkedEnroll
from services.enrollment.repository import PostgresEnrollmentStore
from shared.contracts import RecordRef, RecordType
from shared.contracts.commands import Enroll
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_commands import enroll_cmd
from tests.support.builders.enrollment_domain import NOW
from tests.support.fakes.enrollment import FakeEnrollmentStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[EnrollmentStore]:
    if request.param == "fake":
        yield FakeEnrollmentStore()
        return
    async with migrated_schema(test_env, "enrollment") as conn:
        yield PostgresEnrollmentStore(conn, version_cache={})


def enroll(record_id: str, workflow_id: str = "wf", account_id: str = "acc-a") -> Enroll:
    record = RecordRef(type=RecordType.CONTACT, id=record_id)
    return enroll_cmd(record, workflow_id, account_id)


async def test_parked_enrolls_come_back_whole_per_workflow_in_arrival_order(
    store: EnrollmentStore,
) -> None:
    first, second, other, theirs = (
        enroll("c-2"),
        enroll("c-1"),
        enroll("c-1", "other"),
        enroll("c-1", account_id="acc-b"),
    )
    await store.park_enrolls([ParkedEnroll(first, NOW), ParkedEnroll(other, NOW)])
    await store.park_enrolls([ParkedEnroll(second, NOW), ParkedEnroll(theirs, NOW)])
    await store.park_enrolls([ParkedEnroll(first, NOW + timedelta(hours=1))])  # seen again

    await store.lock_workflows([("acc-a", "wf"), ("acc-a", "wf")])
    taken = await store.take_parked([("acc-a", "wf"), ("acc-a", "nope")])

    assert taken == [first, second]
    assert await store.take_parked([("acc-a", "wf")]) == []
    assert await store.take_parked([("acc-b", "wf"), ("acc-a", "other")]) in (
        [other, theirs],
        [theirs, other],
    )
    assert await store.take_parked([]) == []


async def test_expired_enrolls_are_taken_oldest_first_up_to_the_limit(
    store: EnrollmentStore,
) -> None:
    old, older, fresh = enroll("c-1"), enroll("c-2", "other"), enroll("c-3")
    await store.park_enrolls(
        [
            ParkedEnroll(old, NOW - timedelta(hours=2)),
            ParkedEnroll(older, NOW - timedelta(hours=3)),
            ParkedEnroll(fresh, NOW),
        ]
    )

    first = await store.take_expired_parked(parked_before=NOW - timedelta(hours=1), limit=1)
    rest = await store.take_expired_parked(parked_before=NOW - timedelta(hours=1), limit=10)

    assert (first, rest) == ([older], [old])
    assert await store.take_expired_parked(parked_before=NOW, limit=10) == []  # not before NOW
    assert await store.take_parked([("acc-a", "wf")]) == [fresh]
