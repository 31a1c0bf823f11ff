"""The account's exclusivity setting on the harness (batch and one by one): a record
live in one workflow (paused counts), or in one exclusive workflow, at a time."""

from __future__ import annotations

import pytest

from services.enrollment.domain import Status
from shared.contracts.enrollment_rules import AccountExclusivitySet, Exclusivity
from shared.contracts.events import EnrollmentEnrolled, EnrollmentRejected
from tests.support.builders.enrollment_commands import (
    ALICE,
    BOB,
    apply_cmd,
    definition,
    enroll_cmd,
    exit_cmd,
    pause_cmd,
)
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.enrollment_setup import EnrollmentHarness, enrollment_harness, only
from tests.support.builders.rules_commands import exclusivity_cmd

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


async def two_workflows(
    h: EnrollmentHarness,
    setting: Exclusivity,
    *,
    a_exclusive: bool = False,
    b_exclusive: bool = False,
) -> None:
    await h.given(
        exclusivity_cmd(setting),
        apply_cmd(definition(workflow_id="a", exclusive=a_exclusive)),
        apply_cmd(definition(workflow_id="b", exclusive=b_exclusive)),
    )


def rejection(outcome_rejected: EnrollmentRejected) -> tuple[str, str | None]:
    (found,) = outcome_rejected.payload.rejections
    return found.code, found.workflow_id


async def test_the_setting_is_saved_and_answered(h: EnrollmentHarness) -> None:
    outcome = await h.when(exclusivity_cmd(Exclusivity.ONE_WORKFLOW))

    answer = only(outcome, AccountExclusivitySet)
    assert answer.payload.exclusivity is Exclusivity.ONE_WORKFLOW
    assert h.store.rules.exclusivity == {ACCOUNT: Exclusivity.ONE_WORKFLOW}


async def test_without_a_setting_a_record_enters_any_number_of_workflows(
    h: EnrollmentHarness,
) -> None:
    await two_workflows(h, Exclusivity.NO_LIMIT, a_exclusive=True, b_exclusive=True)

    outcome = await h.when(enroll_cmd(workflow_id="a"), enroll_cmd(workflow_id="b"))

    assert len(outcome.of_type(EnrollmentEnrolled)) == 2


async def test_one_workflow_refuses_a_second_and_names_the_first(h: EnrollmentHarness) -> None:
    await two_workflows(h, Exclusivity.ONE_WORKFLOW)
    await h.when(enroll_cmd(workflow_id="a"))

    refused = only(await h.when(enroll_cmd(workflow_id="b")), EnrollmentRejected)

    assert rejection(refused) == ("in_another_workflow", "a")


async def test_one_workflow_decides_a_run_in_order(h: EnrollmentHarness) -> None:
    await two_workflows(h, Exclusivity.ONE_WORKFLOW)

    outcome = await h.when(
        enroll_cmd(workflow_id="b"), enroll_cmd(workflow_id="a"), enroll_cmd(BOB, workflow_id="a")
    )

    assert [e.payload.workflow_id for e in outcome.of_type(EnrollmentEnrolled)] == ["b", "a"]
    assert [e.payload.record for e in outcome.of_type(EnrollmentEnrolled)] == [ALICE, BOB]
    assert rejection(only(outcome, EnrollmentRejected)) == ("in_another_workflow", "b")


async def test_a_paused_enrollment_counts_as_live(h: EnrollmentHarness) -> None:
    await two_workflows(h, Exclusivity.ONE_WORKFLOW)
    await h.when(enroll_cmd(workflow_id="a"), pause_cmd())
    assert [e.status for e in h.store.enrollments.values()] == [Status.PAUSED]

    refused = only(await h.when(enroll_cmd(workflow_id="b")), EnrollmentRejected)

    assert rejection(refused) == ("in_another_workflow", "a")


async def test_a_record_that_left_its_workflow_may_enter_another(h: EnrollmentHarness) -> None:
    await two_workflows(h, Exclusivity.ONE_WORKFLOW)
    await h.when(enroll_cmd(workflow_id="a"), exit_cmd(workflow_id="a"))

    outcome = await h.when(enroll_cmd(workflow_id="b"))

    assert len(outcome.of_type(EnrollmentEnrolled)) == 1


async def test_one_exclusive_workflow_refuses_a_second_exclusive_one(
    h: EnrollmentHarness,
) -> None:
    await two_workflows(h, Exclusivity.ONE_EXCLUSIVE_WORKFLOW, a_exclusive=True, b_exclusive=True)
    await h.when(enroll_cmd(workflow_id="a"))

    refused = only(await h.when(enroll_cmd(workflow_id="b")), EnrollmentRejected)

    assert rejection(refused) == ("in_another_exclusive_workflow", "a")


async def test_one_exclusive_workflow_lets_a_plain_workflow_in(h: EnrollmentHarness) -> None:
    await two_workflows(h, Exclusivity.ONE_EXCLUSIVE_WORKFLOW, a_exclusive=True)

    outcome = await h.when(enroll_cmd(workflow_id="a"), enroll_cmd(workflow_id="b"))

    assert len(outcome.of_type(EnrollmentEnrolled)) == 2
