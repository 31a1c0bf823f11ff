"""``RulesStore`` (part of ``EnrollmentStore``): the fake and PostgreSQL behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.enrollment.ports import EnrollmentStore
from services.enrollment.repository import PostgresEnrollmentStore
from shared.contracts import RecordRef, RecordType
from shared.contracts.enrollment_rules import Exclusivity
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
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
