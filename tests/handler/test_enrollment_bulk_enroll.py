"""``enrollment.bulk_enroll`` on the harness (batch and one by one): many records into
one workflow, each answered as an enroll of its own, correlated to the command."""

from __future__ import annotations

import pytest

from shared.contracts import RecordRef, RecordType
from shared.contracts.events import EnrollmentEnrolled, EnrollmentRejected
from tests.support.builders.enrollment_commands import ALICE, BOB, apply_cmd, definition
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    enrolled_in,
    enrollment_harness,
)
from tests.support.builders.rules_commands import bulk_enroll_cmd

pytestmark = pytest.mark.handler

CAROL = RecordRef(type=RecordType.CONTACT, id="c-3")
A_DEAL = RecordRef(type=RecordType.DEAL, id="d-1")


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


async def test_each_record_is_answered_enrolled_or_rejected_with_its_reasons(
    h: EnrollmentHarness,
) -> None:
    await enrolled_in(h, definition(0, 24), record=BOB)
    command = bulk_enroll_cmd(ALICE, BOB, CAROL, A_DEAL)

    outcome = await h.when(command)

    enrolled = outcome.of_type(EnrollmentEnrolled)
    assert [e.payload.record for e in enrolled] == [ALICE, CAROL]
    rejected = {r.payload.record: r for r in outcome.of_type(EnrollmentRejected)}
    assert [c.code for c in rejected[BOB].payload.rejections] == ["already_enrolled"]
    assert [c.code for c in rejected[A_DEAL].payload.rejections] == ["record_type_mismatch"]
    assert {m.correlation_id for m in outcome.published} == {command.message_id}


async def test_a_record_named_twice_is_enrolled_once(h: EnrollmentHarness) -> None:
    await h.given(apply_cmd(definition(0, 24)))

    outcome = await h.when(bulk_enroll_cmd(ALICE, ALICE, BOB))

    assert [e.payload.record for e in outcome.of_type(EnrollmentEnrolled)] == [ALICE, BOB]
    assert outcome.of_type(EnrollmentRejected) == []


async def test_a_bulk_enroll_seen_again_enrolls_no_one_twice(h: EnrollmentHarness) -> None:
    await h.given(apply_cmd(definition(0, 24)))
    command = bulk_enroll_cmd(ALICE, BOB)
    first = await h.when(command)

    again = await h.when(command)

    assert len(first.of_type(EnrollmentEnrolled)) == 2
    assert again.of_type(EnrollmentEnrolled) == []
    assert len(h.store.enrollments) == 2


async def test_a_bulk_enroll_into_a_workflow_not_yet_applied_waits_for_it(
    h: EnrollmentHarness,
) -> None:
    parked = await h.when(bulk_enroll_cmd(ALICE, BOB, workflow_id="later"))

    applied = await h.when(apply_cmd(definition(0, 24, workflow_id="later")))

    assert parked.published == []
    assert [e.payload.record for e in applied.of_type(EnrollmentEnrolled)] == [ALICE, BOB]
