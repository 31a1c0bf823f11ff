"""The daily cap on new enrollments on the harness (batch and one by one): enrolls over
it wait for the next day in order, say so, and are decided when that day starts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.enrollment.parking import release_round
from shared.contracts import RecordRef, RecordType
from shared.contracts.enrollment_rules import EnrollmentDeferredByCap
from shared.contracts.events import EnrollmentEnrolled, EnrollmentRejected
from tests.support.builders.enrollment_commands import ALICE, BOB, apply_cmd, definition, enroll_cmd
from tests.support.builders.enrollment_setup import EnrollmentHarness, enrollment_harness
from tests.support.harness import Outcome

pytestmark = pytest.mark.handler

CAROL = RecordRef(type=RecordType.CONTACT, id="c-3")
DAVE = RecordRef(type=RecordType.CONTACT, id="c-4")
TOMORROW = datetime(2026, 3, 3, tzinfo=UTC)  # the harness's clock is 2026-03-02 09:30 UTC


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


async def capped(h: EnrollmentHarness, cap: int) -> None:
    await h.given(apply_cmd(definition(0, 24, daily_enrollment_cap=cap)))


async def release_at(h: EnrollmentHarness, at: datetime) -> Outcome:
    h.now = at
    _, outcome = await h.step(lambda uow: release_round(uow, now=at))
    return outcome


def enrolled(outcome: Outcome) -> list[RecordRef]:
    return [m.payload.record for m in outcome.of_type(EnrollmentEnrolled)]


def deferred(outcome: Outcome) -> list[tuple[RecordRef, date]]:
    return [(m.payload.record, m.payload.day) for m in outcome.of_type(EnrollmentDeferredByCap)]


async def test_enrolls_over_the_cap_wait_for_the_next_day_and_say_so(
    h: EnrollmentHarness,
) -> None:
    await capped(h, 2)

    outcome = await h.when(enroll_cmd(ALICE), enroll_cmd(BOB), enroll_cmd(CAROL))

    assert enrolled(outcome) == [ALICE, BOB]
    assert deferred(outcome) == [(CAROL, date(2026, 3, 3))]
    (wait,) = outcome.of_type(EnrollmentDeferredByCap)
    assert (wait.payload.cap, wait.payload.release_at) == (2, TOMORROW)
    assert [p.release_at for p in h.store.parked.values()] == [TOMORROW]


async def test_waiting_enrolls_are_decided_when_their_day_starts_in_order(
    h: EnrollmentHarness,
) -> None:
    await capped(h, 1)
    await h.when(enroll_cmd(ALICE), enroll_cmd(BOB), enroll_cmd(CAROL))

    too_early = await release_at(h, TOMORROW - timedelta(seconds=1))
    first_day = await release_at(h, TOMORROW)
    second_day = await release_at(h, TOMORROW + timedelta(days=1))

    assert too_early.published == []
    assert enrolled(first_day) == [BOB]
    assert deferred(first_day) == [(CAROL, date(2026, 3, 4))]
    assert enrolled(second_day) == [CAROL]
    assert h.store.parked == {}


async def test_a_new_enroll_queues_behind_those_already_waiting(h: EnrollmentHarness) -> None:
    await capped(h, 1)
    await h.when(enroll_cmd(ALICE), enroll_cmd(BOB))
    h.now = TOMORROW + timedelta(minutes=1)

    early_bird = await h.when(enroll_cmd(DAVE))
    released = await release_at(h, TOMORROW + timedelta(minutes=2))

    assert deferred(early_bird) == [(DAVE, date(2026, 3, 3))]
    assert enrolled(released) == [BOB]
    assert deferred(released) == [(DAVE, date(2026, 3, 4))]


async def test_a_refused_enroll_is_answered_at_once_and_takes_no_place(
    h: EnrollmentHarness,
) -> None:
    await capped(h, 1)

    outcome = await h.when(enroll_cmd(ALICE), enroll_cmd(ALICE), enroll_cmd(BOB))

    assert enrolled(outcome) == [ALICE]
    assert [r.payload.record for r in outcome.of_type(EnrollmentRejected)] == [ALICE]
    assert deferred(outcome) == [(BOB, date(2026, 3, 3))]
