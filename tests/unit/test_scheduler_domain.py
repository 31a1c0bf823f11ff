"""The scheduler's pure decisions and the ``step.due`` message a fired timer becomes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.scheduler.domain import (
    ENDING_EVENTS,
    TimerAction,
    TimerDecision,
    on_enrollment_event,
    on_step_scheduled,
    plan_stops,
    step_due_id,
)
from services.scheduler.messages import step_due
from services.scheduler.ports import FiredTimer
from shared.contracts import TOPIC_OF_TYPE, RecordRef, RecordType, decode, topics
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentStepCompleted,
    EnrollmentStepScheduled,
    StepDue,
)
from shared.contracts.inbound import Channel

pytestmark = pytest.mark.unit

DUE = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ENROLLMENT_ID = uuid.UUID("0b6c3c4e-9f0e-4c59-a0f5-3f4f1d0f7a21")


def test_a_scheduled_step_gets_a_timer() -> None:
    assert on_step_scheduled(enrollment_ended=False).action is TimerAction.SCHEDULE


def test_a_step_scheduled_after_the_enrollment_ended_gets_none() -> None:
    assert on_step_scheduled(enrollment_ended=True) == TimerDecision(
        TimerAction.IGNORE, "enrollment already ended"
    )


@pytest.mark.parametrize(
    ("event_type", "why"),
    [
        (EnrollmentExited.TYPE, "exited"),
        (EnrollmentCompleted.TYPE, "completed"),
        (EnrollmentPaused.TYPE, "paused"),
    ],
)
def test_exits_completions_and_pauses_cancel_pending_timers(event_type: str, why: str) -> None:
    assert on_enrollment_event(event_type) == TimerDecision(TimerAction.CANCEL, why)


@pytest.mark.parametrize(
    "event_type",
    [
        EnrollmentResumed.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentStepCompleted.TYPE,
        EnrollmentStepScheduled.TYPE,
        "enrollment.archived",
    ],
)
def test_other_enrollment_events_leave_timers_alone(event_type: str) -> None:
    assert on_enrollment_event(event_type).action is TimerAction.IGNORE


def test_only_exits_and_completions_end_an_enrollment() -> None:
    # The handler marks these ended; a pause must not be, or resume could never re-arm.
    assert set(ENDING_EVENTS) == {EnrollmentExited.TYPE, EnrollmentCompleted.TYPE}


OTHER_ID = uuid.UUID("5f1d4b0e-2c7e-4e0f-9a7b-2d4b1c3e5f60")
ACCOUNT, OTHER_ACCOUNT = "acme-account", "globex-account"
OURS, THEIRS = (ACCOUNT, ENROLLMENT_ID), (ACCOUNT, OTHER_ID)


def test_a_run_of_stops_is_one_change_per_enrollment_the_first_stop_winning() -> None:
    plan = plan_stops(
        [
            (OURS, EnrollmentPaused.TYPE),
            (THEIRS, EnrollmentCompleted.TYPE),
            (OURS, EnrollmentExited.TYPE),
            (THEIRS, EnrollmentExited.TYPE),
        ]
    )
    # The pause cancelled the timers first; the exit is still what ended the enrollment.
    assert plan.cancel == {OURS: "paused", THEIRS: "completed"}
    assert plan.ended == {OURS: "exited", THEIRS: "completed"}


def test_pauses_alone_end_nothing_and_other_events_change_nothing() -> None:
    plan = plan_stops([(OURS, EnrollmentPaused.TYPE), (THEIRS, EnrollmentResumed.TYPE)])
    assert (plan.cancel, plan.ended) == ({OURS: "paused"}, {})


def test_two_accounts_stops_for_one_enrollment_id_are_two_changes() -> None:
    other_account = (OTHER_ACCOUNT, ENROLLMENT_ID)
    plan = plan_stops([(OURS, EnrollmentPaused.TYPE), (other_account, EnrollmentExited.TYPE)])
    assert plan.cancel == {OURS: "paused", other_account: "exited"}
    assert plan.ended == {other_account: "exited"}  # ours was only paused


def timer_row(**overrides: Any) -> FiredTimer:
    """A timer as ``SchedulerStore.fire_due`` returns it."""
    fields: dict[str, Any] = {
        "enrollment_id": ENROLLMENT_ID,
        "step_index": 1,
        "account_id": "acme-account",
        "workflow_id": "onboarding",
        "workflow_version": 2,
        "record": RecordRef(type=RecordType.CONTACT, id="c-1"),
        "step_id": "follow-up",
        "channel": Channel.SMS,
        "due_at": DUE,
    }
    return FiredTimer(**{**fields, **overrides})


def test_a_fired_timer_becomes_a_step_due() -> None:
    message = step_due(timer_row())

    assert isinstance(message, StepDue)
    assert message.account_id == "acme-account"
    payload = message.payload
    assert payload.enrollment_id == ENROLLMENT_ID
    assert (payload.workflow_id, payload.workflow_version) == ("onboarding", 2)
    assert payload.record == RecordRef(type=RecordType.CONTACT, id="c-1")
    assert (payload.step_index, payload.step_id) == (1, "follow-up")
    assert payload.channel is Channel.SMS
    assert payload.due_at == DUE
    assert message.partition_key() == "acme-account/contact/c-1"
    assert TOPIC_OF_TYPE[message.type] == topics.SCHEDULER_STEPS
    assert decode(message.to_json(), topic=topics.SCHEDULER_STEPS) == message


def test_the_same_timer_fired_twice_gets_the_same_message_id() -> None:
    first = step_due(timer_row())
    again = step_due(timer_row())
    assert first.message_id == again.message_id
    assert first.occurred_at <= again.occurred_at


@pytest.mark.parametrize(
    "change",
    [
        {"due_at": DUE + timedelta(seconds=1)},
        {"due_at": DUE + timedelta(microseconds=1)},
        {"step_index": 2},
        {"enrollment_id": uuid.UUID("5f1d4b0e-2c7e-4e0f-9a7b-2d4b1c3e5f60")},
        {"account_id": "globex-account"},  # the same enrollment id in another account
    ],
)
def test_a_re_armed_or_other_timer_gets_another_message_id(change: dict[str, Any]) -> None:
    assert step_due(timer_row(**change)).message_id != step_due(timer_row()).message_id


def test_step_due_ids_are_deterministic_and_differ_across_accounts() -> None:
    assert step_due_id(ACCOUNT, ENROLLMENT_ID, 1, DUE) == step_due_id(
        ACCOUNT, ENROLLMENT_ID, 1, DUE
    )
    assert step_due_id(ACCOUNT, ENROLLMENT_ID, 1, DUE) != step_due_id(
        OTHER_ACCOUNT, ENROLLMENT_ID, 1, DUE
    )
