"""``ExclusionStore`` (part of ``EnrollmentStore``): the fake and PostgreSQL behave alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from services.enrollment.domain import Admitted, Enrollment, ScheduledStep, VersionApplied
from services.enrollment.domain import definition_hash as hash_of
from services.enrollment.exclusions import Context, RecordData, RuleVersion, matches
from services.enrollment.exclusions_ports import ListChunk, SavedRuleVersion, Suppression
from services.enrollment.ports import EnrollmentStore
from services.enrollment.repository import PostgresEnrollmentStore
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason
from shared.contracts.events import ExclusionHit
from shared.contracts.exclusions import ListKind, RuleChange, RulesetOwner
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_dispatch import granted, pending_exit
from tests.support.builders.enrollment_domain import NOW, definition, enrollment
from tests.support.builders.exclusions import cond, rule_def
from tests.support.fakes.enrollment import FakeEnrollmentStore

pytestmark = pytest.mark.integration

ACTOR = Actor(kind=ActorKind.API, id="test")
WF = definition(0, 3600, workflow_id="wf")
A, B = "acc-a", "acc-b"
ANN = RecordRef(type=RecordType.CONTACT, id="c-ann")
BOB = RecordRef(type=RecordType.CONTACT, id="c-bob")
ACME = RecordRef(type=RecordType.ORGANIZATION, id="o-acme")


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[EnrollmentStore]:
    if request.param == "fake":
        yield FakeEnrollmentStore()
        return
    async with migrated_schema(test_env, "enrollment") as conn:
        yield PostgresEnrollmentStore(conn, version_cache={})


async def given_workflow(store: EnrollmentStore, account: str = A) -> None:
    await store.add_workflow_versions([VersionApplied(account, WF, 1, hash_of(WF), ACTOR)])


async def given_enrolled(
    store: EnrollmentStore,
    record: RecordRef,
    account: str = A,
    contact: ContactDetails | None = None,
    enrollment_id: uuid.UUID | None = None,
) -> Enrollment:
    e = enrollment(
        account_id=account,
        record=record,
        workflow_id="wf",
        enrollment_id=enrollment_id,
        enrolled_at=NOW,
        next_due_at=NOW + timedelta(hours=1),
    )
    await store.insert_enrollments(
        [Admitted(e, ScheduledStep(0, WF.steps[0], NOW), contact, ACTOR)]
    )
    return e


def saved(rule_id: str, version: int, account: str = A, **kw: object) -> SavedRuleVersion:
    rule = RuleVersion(account, rule_def(rule_id, cond("x", "is", version)), version, **kw)  # type: ignore[arg-type]
    return SavedRuleVersion(rule, RuleChange.UPDATED, ACTOR, NOW)


async def test_rule_versions_keep_the_last_as_current_per_account(store: EnrollmentStore) -> None:
    await store.add_rule_versions(
        [saved("r-1", 1), saved("r-1", 2, enabled=False), saved("r-1", 1, B)]
    )

    current = await store.rules_for_update([(A, "r-1"), (B, "r-1"), (A, "r-none")])
    by_account = await store.account_rules([A])

    assert {k: (r.version, r.enabled) for k, r in current.items()} == {
        (A, "r-1"): (2, False),
        (B, "r-1"): (1, True),
    }
    assert [(r.rule_id, r.version) for r in by_account[A]] == [("r-1", 2)]
    assert current[(A, "r-1")].definition == rule_def("r-1", cond("x", "is", 2))


async def test_rulesets_are_replaced_and_read_by_owner(store: EnrollmentStore) -> None:
    key = (A, RulesetOwner.WORKFLOW, "wf")
    await store.put_rulesets([(key, {"r-1": False}), ((B, RulesetOwner.AUDIENCE, "x"), {})])
    await store.put_rulesets([(key, {"r-2": True})])

    assert await store.rulesets([key, (A, RulesetOwner.AUDIENCE, "x")]) == {key: {"r-2": True}}


async def test_records_keep_fields_addresses_domains_and_links_both_ways(
    store: EnrollmentStore,
) -> None:
    ann = RecordData(
        ANN,
        fields={"tags": ("a", "b"), "n": 3, "ok": True, "none": None},
        email="ann@acme.com",
        aliases=("a2@acme.com",),
        company_name="Acme",
        domains=("acme.com",),
        associations=frozenset({ACME}),
    )
    await store.save_records([(A, ann)], [])

    found = await store.records_for_update([(A, ANN), (A, ACME), (B, ANN)])

    assert found[(A, ANN)] == ann
    assert found[(A, ACME)] == RecordData(ACME, associations=frozenset({ANN}), known=False)
    assert (B, ANN) not in found


async def test_saving_a_record_again_keeps_its_links_addresses_and_domains(
    store: EnrollmentStore,
) -> None:
    ann = RecordData(ANN, email="ann@acme.com", associations=frozenset({ACME}))
    acme = RecordData(ACME, domains=("acme.com",), associations=frozenset({ANN}))
    await store.save_records([(A, ann), (A, acme)], [])
    await store.save_records([(A, ann), (A, replace(acme, fields={"tier": "gold"}))], [])

    found = await store.records_for_update([(A, ANN)])
    pairs = await store.contacts_of_companies([(A, ACME)])

    assert found[(A, ANN)].associations == frozenset({ACME})
    assert pairs == [((A, ACME), (A, ANN))]
    assert (await store.subjects([(A, ANN)], {}))[(A, ANN)].values("company.tier") == ("gold",)


async def test_deleting_a_record_forgets_it_and_its_links(store: EnrollmentStore) -> None:
    await store.save_records(
        [
            (A, RecordData(ANN, associations=frozenset({ACME}))),
            (A, RecordData(ACME, company_name="Acme", associations=frozenset({ANN}))),
        ],
        [],
    )
    await store.save_records([], [(A, ANN)])

    found = await store.records_for_update([(A, ANN), (A, ACME)])

    assert list(found) == [(A, ACME)]
    assert found[(A, ACME)].associations == frozenset()


async def test_subjects_bring_companies_by_link_or_domain_and_suppressions(
    store: EnrollmentStore,
) -> None:
    await store.save_records(
        [
            (A, RecordData(ANN, email="ann@acme.com", domains=("acme.com",))),
            (A, RecordData(BOB, email="bob@gmail.com", associations=frozenset({ACME}))),
            (
                A,
                RecordData(
                    ACME,
                    fields={"tier": "gold"},
                    domains=("acme.com",),
                    associations=frozenset({BOB}),
                ),
            ),
            (B, RecordData(ANN, email="ann@acme.com")),
        ],
        [],
    )
    await store.add_suppressions([Suppression(A, "ann@acme.com", "hard_bounced", NOW)])

    subjects = await store.subjects([(A, ANN), (A, BOB), (B, ANN)], {})

    assert [c.record for c in subjects[(A, ANN)].companies] == [ACME]
    assert [c.record for c in subjects[(A, BOB)].companies] == [ACME]
    assert subjects[(A, ANN)].values("company.tier") == ("gold",)
    assert (subjects[(A, ANN)].hard_bounced, subjects[(B, ANN)].hard_bounced) == (True, False)
    assert subjects[(B, ANN)].companies == ()
    pairs = await store.contacts_of_companies([(A, ACME)])
    assert pairs == [((A, ACME), (A, ANN)), ((A, ACME), (A, BOB))]


async def test_a_record_the_crm_never_sent_is_read_from_its_fallback_or_enrollment(
    store: EnrollmentStore,
) -> None:
    await given_workflow(store)
    await given_enrolled(
        store, BOB, contact=ContactDetails(email="bob@x.io", company_domain="WWW.Globex.com")
    )
    fallback = RecordData(ANN, email="ann@y.io", known=False)

    subjects = await store.subjects([(A, ANN), (A, BOB)], {(A, ANN): fallback})

    assert subjects[(A, ANN)].data == fallback
    bob = subjects[(A, BOB)].data
    assert bob is not None
    assert (bob.email, bob.domains) == ("bob@x.io", ("globex.com",))


async def test_lists_are_replaced_by_chunk_zero_and_answer_membership(
    store: EnrollmentStore,
) -> None:
    upload = uuid.uuid4()
    first = ListChunk(A, "l-1", ListKind.DOMAIN, upload, 0, {"old.com": 2})
    await store.save_list_chunks([first])
    await store.save_list_chunks(
        [
            replace(first, upload_id=uuid.uuid4(), entries={"acme.com": 2, "old.com": 3}),
            ListChunk(A, "l-1", ListKind.DOMAIN, upload, 1, {"globex.com": 5}),
        ]
    )

    assert await store.list_kinds([(A, "l-1"), (B, "l-1")]) == {(A, "l-1"): ListKind.DOMAIN}
    hits = await store.list_hits(
        [((A, "l-1"), ["acme.com", "old.com", "globex.com"]), ((B, "l-1"), ["acme.com"])]
    )
    assert hits == {(A, "l-1"): frozenset({"acme.com", "old.com", "globex.com"})}
    await store.save_list_chunks([replace(first, entries={"new.com": 2})])
    again = await store.list_hits([((A, "l-1"), ["acme.com", "new.com"])])
    assert again == {(A, "l-1"): frozenset({"new.com"})}


async def test_live_enrollments_are_paged_by_id_and_found_by_list(store: EnrollmentStore) -> None:
    await given_workflow(store)
    await given_workflow(store, B)
    ids = sorted(uuid.uuid4() for _ in range(3))
    ann = await given_enrolled(store, ANN, enrollment_id=ids[0])
    bob = await given_enrolled(
        store, BOB, enrollment_id=ids[1], contact=ContactDetails(email="bob@globex.com")
    )
    await given_enrolled(store, ANN, account=B, enrollment_id=ids[2])
    await store.save_records([(A, RecordData(ANN, email="ann@acme.com"))], [])
    await store.save_list_chunks(
        [
            ListChunk(
                A, "l-1", ListKind.EMAIL, uuid.uuid4(), 0, {"ann@acme.com": 2, "bob@globex.com": 3}
            )
        ]
    )

    first = await store.live_enrollments_page(A, None, after=None, limit=1)
    rest = await store.live_enrollments_page(A, "wf", after=first[-1].enrollment_id, limit=5)
    on_list = await store.live_enrollments_on_list((A, "l-1"), None)
    on_values = await store.live_enrollments_on_list((A, "l-1"), "wf", values=["bob@globex.com"])

    assert [e.enrollment_id for e in first + rest] == [ann.enrollment_id, bob.enrollment_id]
    assert [e.enrollment_id for e in on_list] == [ann.enrollment_id, bob.enrollment_id]
    assert [e.enrollment_id for e in on_values] == [bob.enrollment_id]


async def test_audiences_of_enrollments_are_kept(store: EnrollmentStore) -> None:
    await given_workflow(store)
    ann = await given_enrolled(store, ANN)
    await store.save_audiences([(A, ann.enrollment_id, "aud-1")])

    assert await store.audiences_of([(A, ann.enrollment_id), (B, ann.enrollment_id)]) == {
        (A, ann.enrollment_id): "aud-1"
    }
    await store.lock_exclusions([A, B], exclusive=True)
    await store.lock_exclusions([A], exclusive=False)


@pytest.mark.parametrize(
    "condition",
    [
        cond("stage", "is", "Customer"),
        cond("tags", "in", ("vip", "x")),
        cond("email", "is", "ANN@acme.com"),
        cond("stage", "set"),
        cond("score", "greater", 3),
        cond("stage", "is_not", "lead"),
    ],
    ids=lambda c: f"{c.field}-{c.operator}",
)
async def test_a_rule_s_page_holds_every_enrollment_the_rule_matches(
    store: EnrollmentStore, condition: object
) -> None:
    await given_workflow(store)
    people = {
        ANN: RecordData(
            ANN, fields={"stage": "customer", "tags": ("VIP",), "score": 5}, email="ann@acme.com"
        ),
        BOB: RecordData(BOB, fields={"stage": "lead", "score": 1}, email="bob@globex.com"),
    }
    await store.save_records([(A, d) for d in people.values()], [])
    carol = RecordRef(type=RecordType.CONTACT, id="c-carol")
    for ref in (*people, carol):
        await given_enrolled(store, ref)
    rule = RuleVersion(A, rule_def("r-1", condition), 1)  # type: ignore[arg-type]

    page = await store.live_enrollments_page(A, None, after=None, limit=10, matching=rule)
    subjects = await store.subjects([(A, r) for r in (*people, carol)], {})

    matched = {ref for (_, ref), s in subjects.items() if matches(rule, s, Context(NOW))}
    assert matched <= {e.record for e in page}


async def test_a_pending_exit_keeps_the_exclusion_it_is_for(store: EnrollmentStore) -> None:
    await given_workflow(store)
    ann = await given_enrolled(store, ANN)
    hit = ExclusionHit(
        rule_id="r-1", version=2, level="global", condition="x is 1", values_seen={"x": 1}
    )
    waiting = replace(
        granted(ann),
        pending_exit=replace(pending_exit(ExitReason.EXCLUSION_MATCHED), exclusion=hit),
    )
    await store.save_progress([waiting])

    (found,) = await store.enrollments_for_update([(A, ann.enrollment_id)])

    assert found.pending_exit is not None
    assert found.pending_exit.exclusion == hit
