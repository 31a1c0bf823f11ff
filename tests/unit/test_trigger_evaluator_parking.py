"""What waits and what is decided (``domain.evaluate``), and the keys that unblock a parked
event (``parking``): pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.trigger_evaluator.domain import (
    Candidate,
    MatchKind,
    Outcome,
    Waiting,
    decide,
    evaluate,
)
from services.trigger_evaluator.parking import (
    RECHECK_AFTER,
    keys_brought_by,
    park,
    released_why,
    waiting_keys,
)
from services.trigger_evaluator.triggers import classify
from shared.contracts.inbound import DealStatus
from shared.contracts.workflow import ExitTrigger
from tests.support.builders.crm_records import deal, stage_changed
from tests.support.builders.enrollment_events import ACCOUNT, T0, enrolled, exited_from
from tests.support.builders.inbound_events import click as clicked
from tests.support.builders.inbound_events import meeting
from tests.support.builders.inbound_events import reply_from_contact as replied
from tests.support.builders.trigger_projection import message_sent, workflow_applied
from tests.support.builders.trigger_views import CONTACT
from tests.support.builders.trigger_views import enrollment_view as enrollment

pytestmark = pytest.mark.unit

SKEW = timedelta(seconds=60)


def test_an_event_that_may_exit_but_matched_nothing_waits_for_an_enrollment() -> None:
    verdict = evaluate(classify(replied(record=CONTACT)), [])

    assert isinstance(verdict, Waiting)
    assert verdict.for_an_enrollment
    assert verdict.why == "no enrollment of the account matched the event yet"


def test_an_event_that_can_never_exit_is_decided_even_with_nothing_matched() -> None:
    verdict = evaluate(classify(clicked(workflow_message_id=None)), [])

    assert not isinstance(verdict, Waiting)
    assert [d.outcome for d in verdict] == [Outcome.IGNORED]


def test_an_automatic_reply_that_matched_nothing_waits_like_a_reply() -> None:
    verdict = evaluate(classify(replied(auto_reply=True)), [])

    assert isinstance(verdict, Waiting)
    parked = park(verdict, replied(auto_reply=True), now=T0)
    assert parked.only_if_a_workflow_exits_on is ExitTrigger.REPLIED


def test_a_deal_stage_change_that_matched_nothing_waits_if_any_of_its_triggers_is_used() -> None:
    event = stage_changed(
        deal("d-1"), "closedwon", DealStatus.WON, previous=("demo", DealStatus.OPEN)
    )
    verdict = evaluate(classify(event), [])

    assert isinstance(verdict, Waiting)
    parked = park(verdict, event, now=T0)
    assert parked.only_if_a_workflow_exits_on is ExitTrigger.DEAL_WON
    assert parked.or_exits_on == (ExitTrigger.DEAL_STAGE_ENTERED,)


def test_a_live_enrollment_of_an_unknown_version_makes_the_whole_event_wait_for_it() -> None:
    known, unknown = enrollment(), enrollment(workflow_known=False)
    candidates = [Candidate(known, MatchKind.THREAD), Candidate(unknown, MatchKind.ADDRESS)]

    verdict = evaluate(classify(replied()), candidates)

    assert isinstance(verdict, Waiting)
    assert verdict.workflow_versions == (("onboarding", 3),)
    assert not verdict.for_an_enrollment


@pytest.mark.parametrize(
    ("began", "exits"),
    [
        pytest.param(None, True, id="start-unknown"),
        pytest.param(T0 - timedelta(days=1), True, id="before-the-event"),
        pytest.param(T0 + SKEW, True, id="within-the-skew"),
        pytest.param(T0 + SKEW + timedelta(microseconds=1), False, id="after-the-skew"),
    ],
)
def test_an_event_exits_only_enrollments_that_began_before_it_give_or_take_the_skew(
    began: datetime | None, exits: bool
) -> None:
    view = enrollment(enrolled_at=began)
    signal = classify(replied())  # occurred at T0

    (decision,) = decide(signal, [Candidate(view, MatchKind.THREAD)], clock_skew=SKEW)

    assert (decision.outcome is Outcome.EXIT) is exits


def test_a_meeting_from_before_the_enrollment_does_not_exit_it_either() -> None:
    view = enrollment(enrolled_at=T0 + timedelta(hours=1))

    (decision,) = decide(classify(meeting(record=CONTACT)), [Candidate(view, MatchKind.ATTENDEE)])

    assert decision.outcome is Outcome.IGNORED
    assert "before the enrollment began" in decision.why


def test_an_event_older_than_its_enrollment_is_decided_without_its_workflow() -> None:
    view = enrollment(enrolled_at=T0 + timedelta(hours=1), workflow_known=False)

    (decision,) = decide(classify(replied()), [Candidate(view, MatchKind.THREAD)])

    assert decision.outcome is Outcome.IGNORED


def test_a_waiting_event_waits_on_what_its_lookup_would_find_it_by() -> None:
    signal = classify(replied(record=CONTACT))  # from c-1@acme.com, quoting sent-1@offramp

    assert waiting_keys(Waiting(signal, "why")) == (
        f"{ACCOUNT}|record|contact/c-1",
        f"{ACCOUNT}|address|c-1@acme.com",
        f"{ACCOUNT}|thread|sent-1@offramp",
    )
    assert waiting_keys(Waiting(signal, "why", (("onboarding", 2),))) == (
        f"{ACCOUNT}|workflow|onboarding/2",
    )


def test_enrollments_sent_emails_and_versions_bring_keys_and_status_changes_none() -> None:
    alice = enrolled("c-1", email="alice@acme.com", aliases=("a@acme.com",))

    keys = keys_brought_by(
        [alice, exited_from(alice), message_sent(alice, " <m-1@o> "), workflow_applied()]
    )

    assert keys == [
        f"{ACCOUNT}|record|contact/c-1",
        f"{ACCOUNT}|address|alice@acme.com",
        f"{ACCOUNT}|address|a@acme.com",
        f"{ACCOUNT}|thread|m-1@o",
        f"{ACCOUNT}|workflow|onboarding/1",
    ]
    assert keys_brought_by([exited_from(alice)]) == []


def test_a_parked_event_is_checked_again_soon_and_released_at_its_limit() -> None:
    event = replied()
    waiting = Waiting(classify(event), "no enrollment of the account matched the event yet")

    parked = park(waiting, event, now=T0, max_wait=timedelta(minutes=10))
    short = park(waiting, event, now=T0, max_wait=timedelta(seconds=2))

    assert (parked.parked_at, parked.check_at) == (T0, T0 + RECHECK_AFTER)
    assert parked.expires_at == T0 + timedelta(minutes=10)
    assert short.check_at == short.expires_at == T0 + timedelta(seconds=2)
    assert parked.only_if_a_workflow_exits_on is ExitTrigger.REPLIED
    assert released_why(parked, waiting) == (
        "released after waiting 600 s: no enrollment of the account matched the event yet"
    )
    for_a_version = park(Waiting(waiting.event, "v", (("wf", 2),)), event, now=T0)
    assert for_a_version.only_if_a_workflow_exits_on is None  # a version always comes
    checked = parked.still(waiting, now=T0 + RECHECK_AFTER)
    assert checked.check_at == checked.expires_at
    assert parked.still(waiting, now=T0) == parked.still(waiting, now=T0 + timedelta(seconds=1))
