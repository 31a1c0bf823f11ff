"""trigger-evaluator handlers on the fake store: an automatic reply pauses, never exits.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.trigger_evaluator.domain import Outcome as DecisionOutcome
from services.trigger_evaluator.handlers import TriggerHandlers
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import Exit, ExitReason, Pause, PauseReason
from shared.contracts.inbound import EmailHeader
from shared.contracts.trigger_settings import OutOfOfficeSettings
from tests.support.builders.enrollment_events import T0, enrolled, exited_from, paused_from
from tests.support.builders.inbound_events import reply
from tests.support.builders.trigger_projection import workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore
from tests.support.harness import Harness

pytestmark = pytest.mark.handler

TriggerEvaluator = Harness[FakeTriggerEvaluatorStore]
OOO_BODY = "I am out of the office until and including 10 March with limited access to email."


@pytest.fixture
def h() -> TriggerEvaluator:
    return Harness(TriggerHandlers().handlers(), FakeTriggerEvaluatorStore, now=T0)


async def test_an_out_of_office_reply_pauses_until_the_day_after_its_last_day_away(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice)

    outcome = await h.when(
        reply(
            from_address="alice@acme.com", subject="Automatic reply: Hello", body_excerpt=OOO_BODY
        )
    )

    assert outcome.of_type(Exit) == []
    (pause,) = outcome.of_type(Pause)
    assert pause.payload.enrollment_id == alice.payload.enrollment_id
    assert pause.payload.reason == PauseReason.OUT_OF_OFFICE
    # Back on 11 March, resumed a day later (the default 24 h margin).
    assert pause.payload.until == datetime(2026, 3, 12, tzinfo=UTC)
    assert pause.payload.actor == SYSTEM_ACTOR
    assert pause.payload.triggering_event is not None
    ((*_, decision),) = h.store.decisions
    assert decision.outcome is DecisionOutcome.PAUSE
    assert "subject starts with 'Automatic reply'" in decision.why
    assert "back on 2026-03-11" in decision.why


async def test_an_auto_reply_told_by_its_headers_alone_pauses_for_the_fallback(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice)

    outcome = await h.when(
        reply(
            from_address="alice@acme.com",
            subject="Re: Hello",
            headers=(EmailHeader(name="Auto-Submitted", value="auto-replied"),),
        )
    )

    (pause,) = outcome.of_type(Pause)
    assert pause.payload.until == T0 + timedelta(days=14)


async def test_the_workflow_sets_the_margin_fallback_and_maximum_of_the_pause(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    ooo = OutOfOfficeSettings(resume_margin_hours=2, fallback_days=3, max_days=10)
    await h.given(workflow_applied(out_of_office=ooo), alice)

    near = await h.when(
        reply(from_address="alice@acme.com", subject="Out of office", body_excerpt=OOO_BODY)
    )
    far = await h.when(
        reply(
            from_address="alice@acme.com",
            message_header_id="<far@mail>",
            subject="Out of office",
            body_excerpt="I am on parental leave until 30 June.",
        )
    )

    assert [p.payload.until for p in near.of_type(Pause)] == [datetime(2026, 3, 11, 2, tzinfo=UTC)]
    assert [p.payload.until for p in far.of_type(Pause)] == [T0 + timedelta(days=10)]


async def test_a_workflow_that_does_not_pause_on_auto_replies_ignores_them(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(out_of_office=OutOfOfficeSettings(pause=False)), alice)

    outcome = await h.when(reply(from_address="alice@acme.com", auto_reply=True))

    assert outcome.published == []
    ((*_, decision),) = h.store.decisions
    assert "pausing on automatic replies is off" in decision.why


async def test_an_auto_reply_never_pauses_an_enrollment_already_paused_or_ended(
    h: TriggerEvaluator,
) -> None:
    alice, bob = enrolled("c-1", email="alice@acme.com"), enrolled("c-2", email="bob@acme.com")
    await h.given(workflow_applied(), alice, bob, paused_from(alice), exited_from(bob))

    outcome = await h.when(
        reply(from_address="alice@acme.com", auto_reply=True),
        reply(from_address="bob@acme.com", message_header_id="<b@mail>", auto_reply=True),
    )

    assert outcome.published == []
    whys = sorted(d.why for *_, d in h.store.decisions)
    assert whys == ["the enrollment already ended", "the enrollment is already paused"]


async def test_a_real_reply_during_the_pause_still_exits(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice, paused_from(alice))

    outcome = await h.when(reply(from_address="alice@acme.com", body_excerpt="Yes, let's talk."))

    (command,) = outcome.of_type(Exit)
    assert command.payload.reason is ExitReason.REPLIED


async def test_a_replayed_auto_reply_publishes_the_very_same_pause(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice)
    event = reply(from_address="alice@acme.com", auto_reply=True)

    first = await h.when(event)
    again = await h.when(event)

    assert [p.message_id for p in first.of_type(Pause)] == [
        p.message_id for p in again.of_type(Pause)
    ]
