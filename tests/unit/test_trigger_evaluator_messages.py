"""trigger-evaluator's exit decisions as ``enrollment.exit`` commands (``messages``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.trigger_evaluator.domain import (
    Candidate,
    MatchKind,
    decide,
    exit_message_id,
)
from services.trigger_evaluator.messages import exit_command
from services.trigger_evaluator.triggers import classify
from shared.contracts import (
    SYSTEM_ACTOR,
    topics,
)
from shared.contracts.commands import ExitReason, ExitSource
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.enrollment_events import T0 as AT
from tests.support.builders.inbound_events import reply_from_contact as replied
from tests.support.builders.trigger_views import (
    COLLEAGUE,
    CONTACT,
)
from tests.support.builders.trigger_views import enrollment_view as enrollment

pytestmark = pytest.mark.unit


def one(decisions: list[Any]) -> Any:
    assert len(decisions) == 1, decisions
    return decisions[0]


def test_the_exit_command_names_the_enrollment_reason_and_triggering_event() -> None:
    event = replied()
    view = enrollment()
    decision = one(decide(classify(event), [Candidate(view, MatchKind.THREAD)]))

    command = exit_command(decision, now=AT)

    assert command.type == "enrollment.exit"
    assert command.account_id == ACCOUNT
    assert command.causation_id == event.message_id
    assert command.correlation_id == event.message_id
    payload = command.payload
    assert payload.record == CONTACT
    assert payload.workflow_id == "onboarding"
    assert payload.enrollment_id == view.enrollment_id
    assert payload.reason is ExitReason.REPLIED
    assert payload.source is ExitSource.TRIGGER
    assert payload.actor == SYSTEM_ACTOR
    assert payload.triggering_event is not None
    assert payload.triggering_event.message_id == event.message_id
    assert payload.triggering_event.type == "email.replied"
    assert payload.triggering_event.topic == topics.INBOUND_EMAIL
    assert payload.triggering_event.occurred_at == AT
    assert command.partition_key() == f"{ACCOUNT}/contact/c-1"


def test_a_replayed_event_yields_the_same_exit_command_id() -> None:
    event = replied()
    view = enrollment()
    other_view = enrollment(COLLEAGUE)
    candidates = [Candidate(view, MatchKind.THREAD)]

    first = exit_command(one(decide(classify(event), candidates)), now=AT)
    replay = exit_command(one(decide(classify(event), candidates)), now=AT)
    other_enrollment = exit_command(
        one(decide(classify(event), [Candidate(other_view, MatchKind.RECORD)])), now=AT
    )
    other_event = replied()
    from_other_event = exit_command(one(decide(classify(other_event), candidates)), now=AT)

    assert first.message_id == replay.message_id
    assert first.message_id != other_enrollment.message_id
    assert first.message_id != from_other_event.message_id


def test_only_an_exit_decision_becomes_a_command() -> None:
    ignored = one(decide(classify(replied(auto_reply=True)), []))

    with pytest.raises(ValueError, match="only an exit decision"):
        exit_command(ignored, now=AT)


def test_exit_ids_are_the_same_on_every_replay_and_differ_across_accounts() -> None:
    event_id, enrollment_id = uuid.uuid4(), uuid.uuid4()
    ours = exit_message_id("acme-account", event_id, enrollment_id)
    assert ours == exit_message_id("acme-account", event_id, enrollment_id)
    # The same upstream event id and enrollment id in another account: another exit.
    assert ours != exit_message_id("other-account", event_id, enrollment_id)
