"""``TriggerEvaluatorStore``: the fake and PostgreSQL behave alike.

Everything is observed through the port: what the lookups find is what was saved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from services.trigger_evaluator.domain import CompanySearch, EnrollmentStatus, MatchKind, Waiting
from services.trigger_evaluator.parking import ParkedEvent, park
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.repository import PostgresTriggerEvaluatorStore
from services.trigger_evaluator.triggers import Signal, classify
from shared.contracts import RecordRef
from shared.contracts.commands import ContactDetails
from shared.contracts.events import EnrollmentEnrolled
from shared.contracts.inbound import BounceKind, EmailBounced, EmailBouncedPayload, EmailReplied
from shared.contracts.trigger_settings import OutOfOfficeSettings
from shared.contracts.workflow import ExitTrigger
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_events import (
    ACCOUNT,
    OTHER_ACCOUNT,
    T0,
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


async def test_a_versions_trigger_settings_come_back_with_its_enrollments(
    store: TriggerEvaluatorStore,
) -> None:
    ooo = OutOfOfficeSettings(resume_margin_hours=3, fallback_days=7, max_days=21)
    applied = workflow_applied(out_of_office=ooo)
    await store.save_workflow_versions([applied])
    await store.save_enrollment_events([enrolled("c-1", email="alice@acme.com")])

    [[candidate]] = await store.candidates([classify(reply(from_address="alice@acme.com"))])

    assert candidate.enrollment.workflow is not None
    assert candidate.enrollment.workflow.settings == applied.payload.definition.settings


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

    colleagues = await store.live_by_company(
        [CompanySearch(ACCOUNT, ["acme.com"]), CompanySearch(ACCOUNT, ["none.org"])]
    )

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
        [CompanySearch(ACCOUNT, ["acme.com"]), CompanySearch(OTHER_ACCOUNT, ["acme.com"])]
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


async def test_an_enrollment_began_at_its_earliest_enrolled_and_unknown_before_it(
    store: TriggerEvaluatorStore,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", occurred_at=T0)
    later = alice.model_copy(update={"occurred_at": T0 + timedelta(hours=1)})
    bob = enrolled("c-2", email="bob@acme.com")
    await store.save_enrollment_events([later, paused_from(bob)])
    await store.save_enrollment_events([alice, later])

    [[found_alice], [found_bob]] = await store.candidates(
        [classify(reply(from_address="alice@acme.com")), classify(reply(record=contact(bob)))]
    )

    assert found_alice.enrollment.enrolled_at == T0
    assert found_bob.enrollment.enrolled_at is None  # its enrollment.enrolled is not read yet


def parked_reply(
    *, account: str = ACCOUNT, after: timedelta = timedelta(0), **fields: str
) -> ParkedEvent:
    event = reply(account=account, **fields)
    waiting = Waiting(classify(event), "no enrollment of the account matched the event yet")
    return park(waiting, event, now=T0 + after, max_wait=timedelta(minutes=1))


def stored(parked: ParkedEvent) -> ParkedEvent:
    """What the store gives back: the condition on parking is not kept."""
    return replace(parked, only_if_a_workflow_exits_on=None)


async def test_an_event_is_parked_only_where_a_workflow_could_exit_on_it(
    store: TriggerEvaluatorStore,
) -> None:
    no_workflow_yet = parked_reply(account="fresh-account", from_address="a@acme.com")
    exits_on_replies = parked_reply(from_address="b@acme.com")
    never_on_replies = parked_reply(account=OTHER_ACCOUNT, from_address="c@acme.com")
    await store.save_workflow_versions(
        [
            workflow_applied(triggers=frozenset({ExitTrigger.LINK_CLICKED})),
            workflow_applied(version=2),
            workflow_applied(account=OTHER_ACCOUNT, triggers=frozenset({ExitTrigger.PAGE_VISITED})),
        ]
    )
    unconditional = replace(never_on_replies, only_if_a_workflow_exits_on=None)

    kept = await store.park([no_workflow_yet, exits_on_replies, never_on_replies])
    kept_anyway = await store.park([unconditional])

    assert kept == {no_workflow_yet.key, exits_on_replies.key}
    assert kept_anyway == {unconditional.key}
    assert await store.park([]) == set()


async def test_parked_events_are_found_by_any_of_their_keys_within_their_account_in_order(
    store: TriggerEvaluatorStore,
) -> None:
    first = parked_reply(from_address="ann@acme.com", in_reply_to="<m-1@o>")
    second = parked_reply(after=timedelta(seconds=1), from_address="bob@acme.com")
    theirs = parked_reply(account=OTHER_ACCOUNT, from_address="ann@acme.com")
    await store.park([second, theirs, first])

    by_address = await store.parked_for([f"{ACCOUNT}|address|ann@acme.com"])
    by_thread = await store.parked_for([f"{ACCOUNT}|thread|m-1@o", "nothing|record|x"])
    both = await store.parked_for(
        [f"{ACCOUNT}|address|bob@acme.com", f"{ACCOUNT}|address|ann@acme.com"]
    )

    assert by_address == by_thread == [stored(first)]
    assert both == [stored(first), stored(second)]
    assert [p.event for p in both] == [first.event, second.event]
    assert await store.parked_for([]) == []


async def test_a_parked_event_parked_again_keeps_its_time_and_a_run_keeps_its_last(
    store: TriggerEvaluatorStore,
) -> None:
    event = parked_reply(from_address="ann@acme.com")
    later = replace(
        event,
        keys=(f"{ACCOUNT}|workflow|onboarding/2",),
        why="workflow onboarding v2 not projected yet",
        parked_at=T0 + timedelta(seconds=9),
        expires_at=T0 + timedelta(hours=9),
        check_at=T0 + timedelta(seconds=30),
        only_if_a_workflow_exits_on=None,
    )
    await store.park([event, replace(event, why="overwritten in the run")])
    await store.park([later])

    (found,) = await store.parked_for([f"{ACCOUNT}|workflow|onboarding/2"])

    assert found == replace(later, parked_at=event.parked_at, expires_at=event.expires_at)
    assert await store.parked_for([f"{ACCOUNT}|address|ann@acme.com"]) == []


async def test_parked_events_come_due_at_their_check_and_leave_once_unparked(
    store: TriggerEvaluatorStore,
) -> None:
    first = parked_reply(from_address="ann@acme.com")
    second = parked_reply(after=timedelta(seconds=1), from_address="bob@acme.com")
    third = parked_reply(after=timedelta(seconds=2), from_address="carol@acme.com")
    await store.park([first, second, third])

    assert await store.parked_due(first.check_at - timedelta(microseconds=1), 10) == []
    assert await store.parked_due(second.check_at, 10) == [stored(first), stored(second)]
    assert await store.parked_due(third.check_at, 2) == [stored(first), stored(second)]
    await store.unpark([first, third])
    await store.unpark([])
    assert await store.parked_due(third.check_at, 10) == [stored(second)]
