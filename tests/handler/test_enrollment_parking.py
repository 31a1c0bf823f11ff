"""An enroll read before its workflow's apply (they are keyed apart, so either may come
first) waits, parked, and is enrolled by the apply; after the wait it is rejected as
before. Nothing sleeps: the apply, or a round of the parked-enroll loop, decides it.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.enrollment.domain import Status, enrollment_id_for
from shared.contracts.events import (
    EnrollmentEnrolled,
    EnrollmentRejected,
    EnrollmentStepScheduled,
    WorkflowApplied,
)
from tests.support.builders.enrollment_commands import BOB, apply_cmd, definition, enroll_cmd
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, T0
from tests.support.builders.enrollment_setup import (
    PARK_MAX,
    SCREENING_CALLS,
    TOO_LONG,
    EnrollmentHarness,
    enrollment_harness,
    expire,
    only,
)

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


async def test_an_enroll_before_its_workflow_is_parked_and_enrolled_by_the_apply(
    h: EnrollmentHarness,
) -> None:
    command = enroll_cmd()

    assert (await h.when(command)).published == []
    assert list(h.store.parked) == [(ACCOUNT, command.message_id)]
    h.now = T0 + timedelta(minutes=5)

    outcome = await h.when(apply_cmd(definition(2, 24)))

    assert [m.type for m in outcome.published] == [
        WorkflowApplied.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    enrolled = only(outcome, EnrollmentEnrolled)
    # The same enrollment, ids and causes as if the enroll had come after the apply.
    assert enrolled.payload.enrollment_id == enrollment_id_for(
        ACCOUNT, command.message_id, "onboarding"
    )
    assert enrolled.causation_id == command.message_id
    assert enrolled.payload.contact == command.payload.contact
    assert only(outcome, EnrollmentStepScheduled).payload.due_at == h.now + timedelta(hours=2)
    saved = h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.enrolled_at) == (Status.ACTIVE, h.now)
    assert h.store.parked == {}
    assert (await expire(h, after=TOO_LONG)).published == []  # nothing left to reject


async def test_enroll_then_apply_in_one_batch_enrolls(h: EnrollmentHarness) -> None:
    outcome = await h.when(enroll_cmd(), enroll_cmd(BOB), apply_cmd(definition()))

    enrolled = outcome.of_type(EnrollmentEnrolled)
    assert [e.payload.record for e in enrolled] == [enroll_cmd().payload.record, BOB]
    assert outcome.of_type(EnrollmentRejected) == []


async def test_parked_enrolls_are_decided_in_the_order_they_came(h: EnrollmentHarness) -> None:
    first, again = enroll_cmd(), enroll_cmd()
    await h.when(first, again)

    outcome = await h.when(apply_cmd(definition()))

    assert only(outcome, EnrollmentEnrolled).causation_id == first.message_id
    rejected = only(outcome, EnrollmentRejected)
    assert rejected.causation_id == again.message_id
    assert [r.code for r in rejected.payload.rejections] == ["already_enrolled"]


async def test_an_enroll_parked_too_long_is_rejected_as_unknown_workflow(
    h: EnrollmentHarness,
) -> None:
    command = enroll_cmd(workflow_id="nowhere")
    await h.when(command)

    assert (await expire(h, after=PARK_MAX - timedelta(seconds=1))).published == []
    (rejected,) = (await expire(h, after=TOO_LONG)).published

    assert isinstance(rejected, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["unknown_workflow"]
    assert rejected.causation_id == command.message_id
    assert h.store.parked == {}
    assert (await expire(h, after=2 * TOO_LONG)).published == []  # once
    # The workflow applied later enrolls nothing: that enroll was answered.
    applied = await h.when(apply_cmd(definition(workflow_id="nowhere")))
    assert [m.type for m in applied.published] == [WorkflowApplied.TYPE]


async def test_a_parked_enroll_seen_again_is_parked_once(h: EnrollmentHarness) -> None:
    command = enroll_cmd()

    await h.when(command, command)

    assert list(h.store.parked) == [(ACCOUNT, command.message_id)]


async def test_parking_locks_only_the_missing_workflows(h: EnrollmentHarness) -> None:
    await h.when(apply_cmd(definition()))
    h.store.calls.clear()
    h.store.locked.clear()

    await h.when(enroll_cmd(), enroll_cmd(BOB, workflow_id="later"))

    assert h.store.locked == {(ACCOUNT, "later")}
    assert h.store.calls == [
        "current_workflows",
        "lock_workflows",
        "current_workflows",
        "park_enrolls",
        "workflow_statuses",
        "account_exclusivity",
        *SCREENING_CALLS,
        "enrollments_in_workflows_for_update",
        "insert_enrollments",
        "add_history",
    ]


async def test_another_account_s_apply_releases_nothing(h: EnrollmentHarness) -> None:
    command = enroll_cmd()
    await h.when(command)

    outcome = await h.when(apply_cmd(definition(), OTHER_ACCOUNT))

    assert [m.type for m in outcome.published] == [WorkflowApplied.TYPE]
    assert list(h.store.parked) == [(ACCOUNT, command.message_id)]
