"""``TriggerEvaluatorStore``: the fake and PostgreSQL behave alike.

Everything is observed through the port: what the lookups find is what was saved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.trigger_evaluator.domain import EnrollmentStatus, MatchKind
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.repository import PostgresTriggerEvaluatorStore
from services.trigger_evaluator.triggers import Signal, classify
from shared.contracts import RecordRef
from shared.contracts.commands import ContactDetails
from shared.contracts.events import EnrollmentEnrolled
from shared.contracts.inbound import BounceKind, EmailBounced, EmailBouncedPayload, EmailReplied
from shared.contracts.workflow import ExitTrigger
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_events import (
    ACCOUNT,
    OTHER_ACCOUNT,
    enrolled,
    exited_from,
    paused_from,
    resumed_from,
)
from tests.support.builders.inbound_events import inbound, meeting, reply
from tests.support.builders.trigger_projection import message_sent, workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[TriggerEvaluatorStore]:
    if request.param == "fake":
        yield FakeTriggerEvaluatorStore()
        return
    async with migrated_schema(test_env, "trigger_evaluator") as conn:
        yield PostgresTriggerEvaluatorStore(conn)


def contact(enrollment: EnrollmentEnrolled) -> RecordRef:
    return enrollment.payload.record


async def found(store: TriggerEvaluatorStore, signal: Signal) -> list[tuple[str, MatchKind]]:
    """(record id, how found) of what one signal's lookup finds, strongest first."""
    [candidates] = await store.candidates([signal])
    return [(c.enrollment.record.id, c.matched_by) for c in candidates]


async def test_a_workflow_version_once_known_never_changes(store: TriggerEvaluatorStore) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    first = workflow_applied(triggers=frozenset({ExitTrigger.REPLIED}))
    second = workflow_applied(triggers=frozenset(), unenroll_company_on_reply=True)
    await store.save_workflow_versions([first, second])  # the first of a run wins
    await store.save_workflow_versions([second])  # and stays
    await store.save_enrollment_events([alice])

    [[candidate]] = await store.candidates([classify(reply(from_address="alice@acme.com"))])

    assert candidate.enrollment.workflow is not None
    assert candidate.enrollment.workflow.exit_triggers == frozenset({ExitTrigger.REPLIED})
    assert candidate.enrollment.workflow.unenroll_company_on_reply is False


async def test_an_enrollment_of_an_unknown_version_is_found_without_its_settings(
    store: TriggerEvaluatorStore,
) -> None:
    await store.save_enrollment_events([enrolled("c-1", email="alice@acme.com", version=2)])

    [[candidate]] = await store.candidates([classify(reply(from_address="alice@acme.com"))])

    assert candidate.enrollment.workflow is None


async def test_a_reply_finds_its_thread_its_record_and_its_sender(
    store: TriggerEvaluatorStore,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", aliases=("a.smith@acme.com",))
    bob = enrolled("c-2", email="bob@acme.com")
    carol = enrolled("c-3", email="carol@acme.com")
    await store.save_enrollment_events([alice, bob, carol])
    # The first enrollment to send a Message-ID keeps it; a blank one is never kept.
    await store.save_sent_messages(
        [message_sent(bob, " <m-1@offramp> "), message_sent(carol, "<m-1@offramp>")]
    )
    await store.save_sent_messages([message_sent(carol, "<>")])

    by_thread = classify(reply(in_reply_to="<m-1@offramp>", record=contact(carol)))
    by_alias = classify(reply(from_address="A.Smith@acme.com"))
    blank = classify(reply(in_reply_to="<>"))

    assert await found(store, by_thread) == [("c-2", MatchKind.THREAD), ("c-3", MatchKind.RECORD)]
    assert await found(store, by_alias) == [("c-1", MatchKind.ADDRESS)]
    assert await found(store, blank) == []


async def test_a_bounce_finds_the_sending_address_only_and_a_meeting_its_attendees(
    store: TriggerEvaluatorStore,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", aliases=("a.smith@acme.com",))
    bob = enrolled("c-2", email="bob@acme.com")
    await store.save_enrollment_events([alice, bob])

    to_alias = inbound(
        EmailBounced, EmailBouncedPayload(from_address="a.smith@acme.com", bounce=BounceKind.HARD)
    )
    booked = meeting(record=contact(bob), attendees=(contact(alice),))

    assert await found(store, classify(to_alias)) == []
    assert sorted(await found(store, classify(booked))) == [
        ("c-1", MatchKind.ATTENDEE),
        ("c-2", MatchKind.ATTENDEE),
    ]


async def test_every_signal_of_a_run_gets_its_own_candidates(store: TriggerEvaluatorStore) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    await store.save_enrollment_events([alice, bob])
    signals = [
        classify(reply(from_address=address))
        for address in ("bob@acme.com", "nobody@acme.com", "alice@acme.com")
    ]

    runs = await store.candidates(signals)

    assert [[c.enrollment.record.id for c in run] for run in runs] == [["c-2"], [], ["c-1"]]
    assert await store.candidates([]) == []


async def test_ended_is_final_and_contact_details_follow_the_last_enrolled(
    store: TriggerEvaluatorStore,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    moved = EnrollmentEnrolled.create(
        account_id=ACCOUNT,
        payload=alice.payload.model_copy(
            update={"contact": ContactDetails(email="alice@new.com", company_domain="new.com")}
        ),
    )
    carol = enrolled("c-3", email="carol@acme.com")
    # Alice's exit arrives before her enrollment; Carol is paused, resumed, paused again.
    await store.save_enrollment_events([exited_from(alice), alice, carol, paused_from(carol)])
    await store.save_enrollment_events([resumed_from(alice), moved, resumed_from(carol)])
    await store.save_enrollment_events([paused_from(carol)])

    runs = await store.candidates(
        [
            classify(reply(from_address=a))
            for a in ("alice@acme.com", "alice@new.com", "carol@acme.com")
        ]
    )

    assert [[(c.enrollment.record.id, c.enrollment.status) for c in run] for run in runs] == [
        [],
        [("c-1", EnrollmentStatus.ENDED)],
        [("c-3", EnrollmentStatus.PAUSED)],
    ]
    assert runs[1][0].enrollment.company_domain == "new.com"


async def test_a_company_search_finds_its_live_enrollments_only(
    store: TriggerEvaluatorStore,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com", company_domain=" ACME.com ")
    carol = enrolled("c-3", email="carol@acme.com")
    dave = enrolled("c-4", email="dave@other.com", company_domain="other.com")
    paused = enrolled("c-5", email="erin@acme.com")
    await store.save_enrollment_events([alice, bob, carol, dave, paused])
    await store.save_enrollment_events([exited_from(carol), paused_from(paused)])

    colleagues = await store.live_by_company([(ACCOUNT, ["acme.com"]), (ACCOUNT, ["none.org"])])

    assert [sorted(v.record.id for v in views) for views in colleagues] == [
        ["c-1", "c-2", "c-5"],
        [],
    ]
    assert await store.live_by_company([]) == []


async def test_two_accounts_with_the_same_ids_stay_apart(store: TriggerEvaluatorStore) -> None:
    """Same enrollment id, workflow, record, email, alias, company, Message-ID, event id."""
    ours = enrolled("c-1", email="ann@acme.com", aliases=("a@acme.com",))
    theirs = EnrollmentEnrolled.create(account_id=OTHER_ACCOUNT, payload=ours.payload)
    await store.save_workflow_versions(
        [
            workflow_applied(account=a, unenroll_company_on_reply=True)
            for a in (ACCOUNT, OTHER_ACCOUNT)
        ]
    )
    # Theirs ends in the same run as both enroll: it must not end ours.
    await store.save_enrollment_events([ours, theirs, exited_from(theirs)])
    await store.save_sent_messages(
        [message_sent(ours, "<m-1@offramp>"), message_sent(theirs, "<m-1@offramp>")]
    )
    ours_replied = reply(
        from_address="a@acme.com", in_reply_to="<m-1@offramp>", record=contact(ours)
    )
    theirs_replied = EmailReplied.create(
        account_id=OTHER_ACCOUNT, payload=ours_replied.payload, message_id=ours_replied.message_id
    )

    found_both = await store.candidates([classify(ours_replied), classify(theirs_replied)])
    colleagues = await store.live_by_company(
        [(ACCOUNT, ["acme.com"]), (OTHER_ACCOUNT, ["acme.com"])]
    )

    for account, candidates in zip((ACCOUNT, OTHER_ACCOUNT), found_both, strict=True):
        assert {c.enrollment.account_id for c in candidates} == {account}
        assert {c.matched_by for c in candidates} == {
            MatchKind.THREAD,
            MatchKind.RECORD,
            MatchKind.ADDRESS,
        }
    assert {c.enrollment.status.live for c in found_both[0]} == {True}
    assert {c.enrollment.status.live for c in found_both[1]} == {False}
    assert [[v.account_id for v in views] for views in colleagues] == [[ACCOUNT], []]
