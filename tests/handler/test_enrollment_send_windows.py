"""Enrollment's handlers with a send window: every scheduled step is published at its
planned time (with the time it fell due), and a step due while the window is closed is
planned again instead of granted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.contracts.commands import ContactDetails, Enroll, EnrollPayload
from shared.contracts.events import (
    EnrollmentEnrolled,
    EnrollmentStepGranted,
    EnrollmentStepScheduled,
)
from shared.contracts.workflow import SendWindow
from tests.support.builders.enrollment_commands import ALICE, apply_cmd, definition
from tests.support.builders.enrollment_dispatch import deferred_for, due_evt, sent_for
from tests.support.builders.enrollment_events import ACCOUNT, USER
from tests.support.builders.enrollment_setup import EnrollmentHarness, enrollment_harness, only

pytestmark = pytest.mark.handler

WINDOW = SendWindow(time_zone="America/New_York")  # 09:00-17:00, Monday to Friday
MONDAY_EVENING = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 18:00 in New York
TUESDAY_NINE_NY = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
TUESDAY_NINE_BERLIN = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def h() -> EnrollmentHarness:
    harness = enrollment_harness()
    harness.now = MONDAY_EVENING
    return harness


def enroll(time_zone: str | None = None) -> Enroll:
    contact = ContactDetails(email="c-1@acme.com", time_zone=time_zone)
    payload = EnrollPayload(workflow_id="onboarding", record=ALICE, contact=contact, actor=USER)
    return Enroll.create(account_id=ACCOUNT, payload=payload)


async def test_an_enrollment_after_hours_publishes_its_first_step_at_the_next_opening(
    h: EnrollmentHarness,
) -> None:
    outcome = await h.when(apply_cmd(definition(0, 24, send_window=WINDOW)), enroll())
    scheduled = only(outcome, EnrollmentStepScheduled).payload
    assert (scheduled.due_at, scheduled.unplanned_at) == (TUESDAY_NINE_NY, MONDAY_EVENING)


async def test_the_records_time_zone_from_the_enroll_command_plans_its_steps(
    h: EnrollmentHarness,
) -> None:
    outcome = await h.when(
        apply_cmd(definition(0, 24, send_window=WINDOW)), enroll("Europe/Berlin")
    )
    assert only(outcome, EnrollmentStepScheduled).payload.due_at == TUESDAY_NINE_BERLIN
    enrolled = only(outcome, EnrollmentEnrolled)
    h.now = TUESDAY_NINE_BERLIN
    grant = only(await h.when(due_evt(enrolled, due_at=TUESDAY_NINE_BERLIN)), EnrollmentStepGranted)
    # The next step falls due a day later, at 09:00 Berlin time on Wednesday: in the window.
    outcome = await h.when(sent_for(grant, sent_at=TUESDAY_NINE_BERLIN))
    due = only(outcome, EnrollmentStepScheduled).payload
    assert due.due_at == TUESDAY_NINE_BERLIN + timedelta(days=1)


async def test_a_step_due_after_the_window_closed_is_planned_again_not_granted(
    h: EnrollmentHarness,
) -> None:
    outcome = await h.when(apply_cmd(definition(0, 24, send_window=WINDOW)), enroll())
    enrolled = only(outcome, EnrollmentEnrolled)
    h.now = TUESDAY_NINE_NY + timedelta(hours=8, minutes=5)  # the scheduler was far behind
    outcome = await h.when(due_evt(enrolled, due_at=TUESDAY_NINE_NY))
    assert outcome.of_type(EnrollmentStepGranted) == []
    again = only(outcome, EnrollmentStepScheduled).payload
    assert again.due_at == TUESDAY_NINE_NY + timedelta(days=1)
    # At the next opening the step is granted, its lease ending with the window.
    h.now = again.due_at
    grant = only(await h.when(due_evt(enrolled, due_at=again.due_at)), EnrollmentStepGranted)
    assert grant.payload.lease_until <= again.due_at + timedelta(hours=8)


async def test_a_grant_lapsed_at_the_windows_close_waits_for_the_next_opening(
    h: EnrollmentHarness,
) -> None:
    outcome = await h.when(apply_cmd(definition(0, 24, send_window=WINDOW)), enroll())
    enrolled = only(outcome, EnrollmentEnrolled)
    closing = TUESDAY_NINE_NY + timedelta(hours=8)
    h.now = closing - timedelta(seconds=10)
    grant = only(await h.when(due_evt(enrolled, due_at=TUESDAY_NINE_NY)), EnrollmentStepGranted)
    assert grant.payload.lease_until == closing
    h.now = closing + timedelta(seconds=1)  # messaging was busy (a send limit, retries)
    outcome = await h.when(deferred_for(grant, next_attempt_at=h.now))
    assert outcome.of_type(EnrollmentStepGranted) == []
    assert only(outcome, EnrollmentStepScheduled).payload.due_at == (
        TUESDAY_NINE_NY + timedelta(days=1)
    )
    h.now = TUESDAY_NINE_NY + timedelta(days=1)
    regrant = only(await h.when(due_evt(enrolled, due_at=h.now)), EnrollmentStepGranted)
    assert regrant.payload.dispatch_id != grant.payload.dispatch_id
