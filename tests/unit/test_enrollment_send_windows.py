"""Enrollment plans every step in the workflow's send window, in the record's time zone,
and grants a step only while the window is open, for no longer than the opening lasts."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.enrollment.dispatch import (
    DueStep,
    Granted,
    Rescheduled,
    decide_grant,
    decide_renewal,
)
from services.enrollment.domain import Admitted, Status, decide_enrollment
from services.enrollment.exits import SentStep
from services.enrollment.pauses import Resumed, decide_resume
from services.enrollment.steps import ScheduleNext, on_step_sent
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import ContactDetails
from shared.contracts.inbound import Channel
from shared.contracts.workflow import SendWindow
from tests.support.builders.enrollment_dispatch import LEASE, dispatch
from tests.support.builders.enrollment_domain import ACCOUNT, CONTACT, enrollment, workflow

pytestmark = pytest.mark.unit

HOUR = 3600
# 09:00-17:00 on weekdays, New York time unless the record says otherwise.
BUSINESS_HOURS = SendWindow(time_zone="America/New_York")
MONDAY_EVENING = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 18:00 in New York
TUESDAY_NINE_NY = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
TUESDAY_NINE_BERLIN = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
WINDOWED = workflow(0, HOUR, send_window=BUSINESS_HOURS)


def admit(now: datetime, time_zone: str | None = None) -> Admitted:
    decision = decide_enrollment(
        workflow=WINDOWED,
        workflow_id="onboarding",
        record=CONTACT,
        account_id=ACCOUNT,
        previous=[],
        now=now,
        enrollment_id=uuid.uuid4(),
        contact=ContactDetails(time_zone=time_zone) if time_zone else None,
        actor=SYSTEM_ACTOR,
    )
    assert isinstance(decision, Admitted)
    return decision


def test_a_first_step_due_after_hours_is_planned_at_the_next_opening() -> None:
    admitted = admit(MONDAY_EVENING)
    assert admitted.enrollment.next_due_at == TUESDAY_NINE_NY
    assert admitted.scheduled.due_at == TUESDAY_NINE_NY
    assert admitted.scheduled.unplanned_at == MONDAY_EVENING


def test_the_enroll_commands_time_zone_is_kept_and_used() -> None:
    admitted = admit(MONDAY_EVENING, "Europe/Berlin")
    assert admitted.enrollment.time_zone == "Europe/Berlin"
    assert admitted.scheduled.due_at == TUESDAY_NINE_BERLIN


def test_the_next_step_after_a_send_is_planned_in_the_window() -> None:
    current = admit(MONDAY_EVENING).enrollment
    sent = SentStep(0, "s0", "<m@x>", TUESDAY_NINE_NY + timedelta(hours=7, minutes=30))
    decision = on_step_sent(current, WINDOWED.definition, sent, now=sent.sent_at)
    assert isinstance(decision, ScheduleNext)
    # Due at 17:30 New York time: planned at 09:00 the next morning.
    assert decision.scheduled.due_at == TUESDAY_NINE_NY + timedelta(days=1)
    assert decision.enrollment.next_due_at == decision.scheduled.due_at


def test_a_resume_after_hours_plans_the_step_at_the_next_opening() -> None:
    paused = replace(admit(MONDAY_EVENING).enrollment, status=Status.PAUSED)
    after_hours = TUESDAY_NINE_NY + timedelta(hours=9)
    decision = decide_resume(paused, WINDOWED, actor=SYSTEM_ACTOR, now=after_hours)
    assert isinstance(decision, Resumed)
    assert decision.scheduled.due_at == TUESDAY_NINE_NY + timedelta(days=1)


def due(at: datetime) -> DueStep:
    return DueStep(0, "s0", Channel.EMAIL, at)


def test_a_grant_in_the_window_lasts_no_longer_than_the_opening() -> None:
    closing = TUESDAY_NINE_NY + timedelta(hours=8)
    now = closing - timedelta(seconds=30)
    decision = decide_grant(
        enrollment(),
        due(now),
        dispatch_id=uuid.uuid4(),
        lease=LEASE,
        now=now,
        definition=WINDOWED.definition,
    )
    assert isinstance(decision, Granted)
    assert decision.dispatch.lease_until == closing


def test_a_step_due_while_the_window_is_closed_is_planned_again_not_granted() -> None:
    late = TUESDAY_NINE_NY + timedelta(hours=8)  # the scheduler fired at 17:00 sharp or later
    decision = decide_grant(
        enrollment(),
        due(late),
        dispatch_id=uuid.uuid4(),
        lease=LEASE,
        now=late,
        definition=WINDOWED.definition,
    )
    assert isinstance(decision, Rescheduled)
    assert decision.enrollment.dispatch is None
    assert decision.scheduled.due_at == TUESDAY_NINE_NY + timedelta(days=1)
    assert decision.enrollment.next_due_at == decision.scheduled.due_at


def test_a_lapsed_grant_is_renewed_only_inside_the_window() -> None:
    closing = TUESDAY_NINE_NY + timedelta(hours=8)
    held = replace(enrollment(), dispatch=dispatch(lease_until=closing))
    assert held.dispatch is not None
    common = {
        "dispatch_id": held.dispatch.dispatch_id,
        "lapsed": closing,
        "lease": LEASE,
        "definition": WINDOWED.definition,
    }
    inside = decide_renewal(
        held,
        due(closing),
        next_attempt_at=closing - timedelta(hours=1),
        now=closing - timedelta(hours=1),
        **common,  # type: ignore[arg-type]
    )
    assert isinstance(inside, Granted)
    assert inside.dispatch.lease_until == closing - timedelta(hours=1) + LEASE
    after_hours = decide_renewal(
        held,
        due(closing),
        next_attempt_at=closing + timedelta(seconds=2),
        now=closing,
        **common,  # type: ignore[arg-type]
    )
    assert isinstance(after_hours, Rescheduled)
    assert after_hours.enrollment.dispatch is None
    assert after_hours.scheduled.due_at == TUESDAY_NINE_NY + timedelta(days=1)
