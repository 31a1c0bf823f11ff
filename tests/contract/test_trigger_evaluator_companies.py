"""``TriggerEvaluatorStore``'s company lookups: the fake and PostgreSQL behave alike.

A company's contacts are those of the CRM organization associated with the anchors, as
trigger-evaluator's own projection of record data leaves it; the email domain counts
only when no organization is known.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.trigger_evaluator.domain import CompanySearch
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.repository import PostgresTriggerEvaluatorStore
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.crm_records import (
    associated,
    contact,
    deal,
    deleted,
    organization,
    upserted,
)
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, enrolled, exited_from
from tests.support.builders.trigger_projection import workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore

pytestmark = pytest.mark.integration

ACME, GLOBEX = organization("o-acme"), organization("o-globex")


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[TriggerEvaluatorStore]:
    if request.param == "fake":
        yield FakeTriggerEvaluatorStore()
        return
    async with migrated_schema(test_env, "trigger_evaluator") as conn:
        yield PostgresTriggerEvaluatorStore(conn)


async def company_of(store: TriggerEvaluatorStore, *searches: CompanySearch) -> list[list[str]]:
    found = await store.live_by_company(list(searches))
    return [sorted(v.record.id for v in views) for views in found]


async def test_the_organization_of_the_anchor_names_the_company_not_the_domain(
    store: TriggerEvaluatorStore,
) -> None:
    people = [
        enrolled("c-1", email="ann@acme.com"),
        enrolled("c-2", email="bo@gmail.com", company_domain="gmail.com"),  # at acme, by CRM
        enrolled("c-3", email="cy@acme.com"),  # acme.com domain, but of another organization
        enrolled("c-4", email="di@acme.com"),
    ]
    await store.save_workflow_versions([workflow_applied()])
    await store.save_enrollment_events([*people, exited_from(people[3])])
    await store.save_record_links(
        [
            upserted(ACME, contact("c-1"), contact("c-2"), contact("c-4")),
            upserted(contact("c-3"), GLOBEX),
        ]
    )

    by_org, by_domain = await company_of(
        store,
        CompanySearch(ACCOUNT, ["acme.com"], [contact("c-1")]),
        CompanySearch(ACCOUNT, ["acme.com"], [contact("c-9")]),  # no organization known
    )

    assert by_org == ["c-1", "c-2"]  # c-4 ended; c-3 is Globex's
    assert by_domain == ["c-1", "c-3"]


async def test_a_deal_finds_its_organizations_contacts_and_its_own(
    store: TriggerEvaluatorStore,
) -> None:
    await store.save_workflow_versions([workflow_applied()])
    await store.save_enrollment_events(
        [enrolled(f"c-{i}", email=f"p{i}@x.org", company_domain="x.org") for i in range(1, 5)]
    )
    await store.save_record_links(
        [
            associated(deal("d-1"), ACME),
            associated(contact("c-1"), ACME),
            associated(ACME, contact("c-2")),
            associated(contact("c-3"), deal("d-1")),
        ]
    )

    [found] = await company_of(store, CompanySearch(ACCOUNT, [], [deal("d-1"), contact("c-4")]))

    assert found == ["c-1", "c-2", "c-4"]  # c-3 is on the deal but not of its company


async def test_snapshots_removals_and_deletions_replace_associations_in_order(
    store: TriggerEvaluatorStore,
) -> None:
    await store.save_workflow_versions([workflow_applied()])
    await store.save_enrollment_events(
        [enrolled(f"c-{i}", email=f"p{i}@x.org", company_domain="x.org") for i in range(1, 6)]
    )
    await store.save_record_links(
        [
            upserted(ACME, contact("c-1"), contact("c-2")),
            associated(contact("c-3"), ACME),
        ]
    )
    await store.save_record_links(
        [
            upserted(contact("c-1"), GLOBEX),  # c-1 moved to Globex
            associated(contact("c-3"), ACME, added=False),
            associated(contact("c-4"), ACME),
            deleted(contact("c-4")),
            upserted(contact("c-5"), ACME),
            associated(ACME, contact("c-2"), added=False),
            associated(ACME, contact("c-2")),  # and back
        ]
    )

    acme, globex = await company_of(
        store, CompanySearch(ACCOUNT, [], [ACME]), CompanySearch(ACCOUNT, [], [GLOBEX])
    )

    assert acme == ["c-2", "c-5"]
    assert globex == ["c-1"]


async def test_associations_never_cross_accounts(store: TriggerEvaluatorStore) -> None:
    await store.save_workflow_versions(
        [workflow_applied(), workflow_applied(account=OTHER_ACCOUNT)]
    )
    await store.save_enrollment_events(
        [
            enrolled("c-1", email="a@acme.com"),
            enrolled("c-2", email="b@acme.com", account=OTHER_ACCOUNT),
        ]
    )
    await store.save_record_links(
        [
            upserted(ACME, contact("c-1"), contact("c-2")),
            upserted(ACME, contact("c-2"), account=OTHER_ACCOUNT),
        ]
    )

    ours, theirs = await company_of(
        store, CompanySearch(ACCOUNT, [], [ACME]), CompanySearch(OTHER_ACCOUNT, [], [ACME])
    )

    assert ours == ["c-1"]
    assert theirs == ["c-2"]


async def test_a_records_field_snapshot_is_swapped_and_the_one_before_returned(
    store: TriggerEvaluatorStore,
) -> None:
    ann, bob = (ACCOUNT, contact("c-1")), (ACCOUNT, contact("c-2"))
    theirs = (OTHER_ACCOUNT, contact("c-1"))

    first = await store.swap_record_fields({ann: {"stage": "lead"}, theirs: {"stage": "x"}})
    second = await store.swap_record_fields({ann: {"stage": "won", "tags": ["a"]}, bob: None})
    third = await store.swap_record_fields({ann: None, theirs: {"stage": "y"}})
    fourth = await store.swap_record_fields({ann: {"stage": "new"}})

    assert first == {}
    assert second == {ann: {"stage": "lead"}}
    assert third == {ann: {"stage": "won", "tags": ["a"]}, theirs: {"stage": "x"}}
    assert fourth == {}  # forgotten by its deletion
