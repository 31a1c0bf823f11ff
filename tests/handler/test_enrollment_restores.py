"""Enrollment handlers on the fake store: answers to commands that change nothing, the
bulk exit of selected records, and restoring enrollments that exited by mistake.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.enrollment.domain import Status
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.enrollment_rules import Exclusivity
from shared.contracts.events import (
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentStepScheduled,
)
from shared.contracts.exclusions import RuleAction
from shared.contracts.lifecycle_events import (
    CommandRefused,
    EnrollmentRestored,
    RestorePreviewed,
)
from tests.support.builders.enrollment_commands import (
    ALICE,
    BOB,
    apply_cmd,
    definition,
    enroll_cmd,
    exit_cmd,
    sent_evt,
)
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    answers,
    changes,
    enrolled_in,
    enrollment_harness,
    only,
)
from tests.support.builders.exclusion_commands import disable_rule, put_rule, upserted
from tests.support.builders.exclusions import cond
from tests.support.builders.lifecycle_commands import (
    bulk_exit_cmd,
    bulk_restore_cmd,
    pause_wf_cmd,
    restore_cmd,
)
from tests.support.builders.rules_commands import exclusivity_cmd

pytestmark = pytest.mark.handler

HOUR = timedelta(hours=1)


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


async def test_an_exit_of_a_record_in_no_workflow_is_answered_not_enrolled(
    h: EnrollmentHarness,
) -> None:
    await h.given(apply_cmd(definition()))
    command = exit_cmd()

    (refused,) = (await h.when(command)).published

    assert isinstance(refused, CommandRefused)
    assert refused.causation_id == command.message_id
    assert (refused.payload.command_type, refused.payload.code) == (
        "enrollment.exit",
        "not_enrolled",
    )
    assert refused.payload.record == ALICE
    assert refused.partition_key() == ALICE.key(ACCOUNT)


async def test_a_bulk_exit_answers_each_record(h: EnrollmentHarness) -> None:
    alice = await enrolled_in(h, definition(0, 24))
    await enrolled_in(h, record=BOB)
    await h.when(exit_cmd(BOB))
    nobody = BOB.model_copy(update={"id": "c-9"})
    command = bulk_exit_cmd(ALICE, BOB, nobody, ALICE)

    outcome = await h.when(command)

    (exited,) = outcome.of_type(EnrollmentExited)
    assert exited.payload.enrollment_id == alice.payload.enrollment_id
    assert (exited.payload.source, exited.payload.reason) == (ExitSource.BULK, ExitReason.MANUAL)
    assert answers(outcome) == ["already_exited", "not_enrolled"]
    assert {m.causation_id for m in outcome.published} == {command.message_id}


async def test_a_bulk_exit_from_a_workflow_agents_may_not_stop_is_refused_per_record(
    h: EnrollmentHarness,
) -> None:
    await enrolled_in(h, definition(agents_may_stop=False))

    outcome = await h.when(bulk_exit_cmd(ALICE, actor=USER))

    assert (changes(outcome), answers(outcome)) == ([], ["agents_may_not_stop"])


async def test_a_bulk_exit_of_an_unknown_workflow_is_refused(h: EnrollmentHarness) -> None:
    outcome = await h.when(bulk_exit_cmd(ALICE, workflow_id="nowhere"))

    assert answers(outcome) == ["unknown_workflow"]


async def exited_after_first_step(h: EnrollmentHarness) -> EnrollmentEnrolled:
    """ALICE sent step 0 of a three-step workflow, then exited by mistake."""
    enrolled = await enrolled_in(h, definition(0, 24, 48))
    await h.when(sent_evt(enrolled, 0, T0))
    await h.when(exit_cmd())
    return enrolled


async def test_a_restore_continues_at_the_next_step_counted_from_the_restore(
    h: EnrollmentHarness,
) -> None:
    old = await exited_after_first_step(h)
    h.now = T0 + 5 * HOUR
    command = restore_cmd(old.payload.enrollment_id)

    outcome = await h.when(command)

    assert [m.type for m in outcome.published] == [
        EnrollmentRestored.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    restored = only(outcome, EnrollmentRestored)
    assert restored.payload.restored_from == old.payload.enrollment_id
    assert restored.payload.step_index == 1
    assert restored.causation_id == command.message_id
    scheduled = only(outcome, EnrollmentStepScheduled)
    assert (scheduled.payload.step_index, scheduled.payload.due_at) == (1, h.now + 24 * HOUR)
    new = h.store.enrollments[(ACCOUNT, restored.payload.enrollment_id)]
    assert (new.status, new.current_step, new.steps_completed) == (Status.ACTIVE, 1, 1)
    assert h.store.enrollments[(ACCOUNT, old.payload.enrollment_id)].status is Status.EXITED
    assert only(outcome, EnrollmentEnrolled).payload.contact == (old.payload.contact)


async def test_a_restore_is_refused_with_the_reason(h: EnrollmentHarness) -> None:
    old = await exited_after_first_step(h)
    first = await h.when(restore_cmd(old.payload.enrollment_id))
    new_id = only(first, EnrollmentRestored).payload.enrollment_id

    again = await h.when(restore_cmd(old.payload.enrollment_id))
    live = await h.when(restore_cmd(new_id))
    unknown = await h.when(restore_cmd(new_id, record=BOB))

    assert answers(again) == ["already_restored"]
    assert answers(live) == ["not_exited"]
    assert answers(unknown) == ["not_enrolled"]


async def test_a_restore_into_a_paused_workflow_is_refused(h: EnrollmentHarness) -> None:
    old = await exited_after_first_step(h)
    await h.when(pause_wf_cmd())

    outcome = await h.when(restore_cmd(old.payload.enrollment_id))

    assert (changes(outcome), answers(outcome)) == ([], ["workflow_paused"])


async def test_a_restore_of_a_record_enrolled_again_is_refused(h: EnrollmentHarness) -> None:
    await h.given(apply_cmd(definition(0, 24, 48, reenrollment="anytime")))
    old = only(await h.when(enroll_cmd()), EnrollmentEnrolled)
    await h.when(exit_cmd())
    await h.when(enroll_cmd())

    outcome = await h.when(restore_cmd(old.payload.enrollment_id))

    assert answers(outcome) == ["already_enrolled"]


async def test_a_bulk_restore_previews_first_then_restores_what_it_previewed(
    h: EnrollmentHarness,
) -> None:
    alice = await enrolled_in(h, definition(0, 24))
    bob = await enrolled_in(h, record=BOB)
    await h.when(exit_cmd(), exit_cmd(BOB))
    before = h.store.snapshot()

    preview = only(await h.when(bulk_restore_cmd(dry_run=True)), RestorePreviewed).payload
    assert h.store.snapshot() == before
    outcome = await h.when(bulk_restore_cmd(dry_run=False, reason=ExitReason.REPLIED))
    nothing_left = await h.when(bulk_restore_cmd(dry_run=False))

    assert (preview.would_restore, preview.would_refuse) == (2, 0)
    assert {c.enrollment_id for c in preview.candidates} == {
        alice.payload.enrollment_id,
        bob.payload.enrollment_id,
    }
    restored = outcome.of_type(EnrollmentRestored)
    assert {r.payload.restored_from for r in restored} == {
        c.enrollment_id for c in preview.candidates
    }
    assert answers(nothing_left) == ["nothing_to_restore"]


async def test_a_bulk_restore_filters_by_reason_and_time(h: EnrollmentHarness) -> None:
    await enrolled_in(h, definition(0, 24))
    await h.when(exit_cmd())

    other_reason = await h.when(bulk_restore_cmd(dry_run=False, reason=ExitReason.MANUAL))
    too_late = await h.when(bulk_restore_cmd(dry_run=True, exited_from=T0 + HOUR))
    in_range = await h.when(bulk_restore_cmd(dry_run=True, exited_until=T0 + HOUR))

    assert answers(other_reason) == ["nothing_to_restore"]
    assert only(too_late, RestorePreviewed).payload.would_restore == 0
    assert only(in_range, RestorePreviewed).payload.would_restore == 1


async def test_a_restore_is_refused_while_a_blocking_exclusion_matches_the_record(
    h: EnrollmentHarness,
) -> None:
    old = await exited_after_first_step(h)
    await h.given(
        put_rule("r-1", cond("lifecyclestage", "is", "customer")),
        upserted(ALICE, fields={"lifecyclestage": "customer"}),
    )

    outcome = await h.when(restore_cmd(old.payload.enrollment_id))
    preview = await h.when(bulk_restore_cmd(dry_run=True))

    refused = only(outcome, CommandRefused).payload
    assert refused.code == "exclusion_blocks"
    assert "r-1" in refused.detail
    (candidate,) = only(preview, RestorePreviewed).payload.candidates
    assert candidate.refused == "exclusion_blocks"


async def test_a_bulk_restore_by_rule_restores_what_a_wrong_exclusion_rule_exited(
    h: EnrollmentHarness,
) -> None:
    await enrolled_in(h, definition(0, 24))
    await enrolled_in(h, record=BOB)
    await h.when(exit_cmd(BOB))  # a reply: not the rule's doing
    customer = cond("lifecyclestage", "is", "customer")
    await h.given(put_rule("r-1", customer, action=RuleAction.REMOVE))
    await h.when(upserted(ALICE, fields={"lifecyclestage": "customer"}))
    await h.given(disable_rule("r-1"))  # the rule was wrong

    other_version = await h.when(bulk_restore_cmd(dry_run=True, rule_id="r-1", rule_version=2))
    outcome = await h.when(bulk_restore_cmd(dry_run=False, rule_id="r-1", rule_version=1))

    assert only(other_version, RestorePreviewed).payload.would_restore == 0
    (restored,) = outcome.of_type(EnrollmentRestored)
    assert restored.payload.record == ALICE


async def test_a_restore_is_refused_while_the_record_is_live_in_another_workflow_of_a_one_workflow_account(  # noqa: E501
    h: EnrollmentHarness,
) -> None:
    old = await exited_after_first_step(h)
    await h.when(exclusivity_cmd(Exclusivity.ONE_WORKFLOW))
    await h.when(apply_cmd(definition(0, 24, workflow_id="other")))
    await h.when(enroll_cmd(workflow_id="other"))

    outcome = await h.when(restore_cmd(old.payload.enrollment_id))

    assert (changes(outcome), answers(outcome)) == ([], ["in_another_workflow"])


async def test_a_restore_is_refused_once_the_workflow_s_daily_cap_is_reached(
    h: EnrollmentHarness,
) -> None:
    await h.given(apply_cmd(definition(0, 24, 48, daily_enrollment_cap=1)))
    old = only(await h.when(enroll_cmd()), EnrollmentEnrolled)
    await h.when(exit_cmd())

    outcome = await h.when(restore_cmd(old.payload.enrollment_id))

    assert (changes(outcome), answers(outcome)) == ([], ["daily_cap_reached"])


async def test_a_restore_under_the_daily_cap_counts_against_it(h: EnrollmentHarness) -> None:
    await h.given(apply_cmd(definition(0, 24, 48, daily_enrollment_cap=2)))
    old = only(await h.when(enroll_cmd()), EnrollmentEnrolled)
    await h.when(exit_cmd())

    restored = await h.when(restore_cmd(old.payload.enrollment_id))
    bob = await h.when(enroll_cmd(BOB))

    assert only(restored, EnrollmentRestored).payload.restored_from == old.payload.enrollment_id
    assert bob.of_type(EnrollmentEnrolled) == []
