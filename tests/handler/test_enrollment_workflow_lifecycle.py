"""Enrollment handlers on the fake store: pausing, resuming and deleting a workflow (its
live enrollments exit in chunks), its activity, the account's order of workflows.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import pytest

from services.enrollment.domain import Status
from shared.contracts import RecordRef, RecordType
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    EnrollmentDispatchRevoked,
    EnrollmentExited,
    EnrollmentRejected,
)
from shared.contracts.lifecycle_events import (
    CommandRefused,
    WorkflowActivityChanged,
    WorkflowExitsProgress,
    WorkflowsReordered,
    WorkflowStatus,
    WorkflowStatusChanged,
)
from tests.support.builders.enrollment_commands import apply_cmd, definition, enroll_cmd
from tests.support.builders.enrollment_dispatch import due_evt
from tests.support.builders.enrollment_events import ACCOUNT, USER
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    answers,
    changes,
    enrolled_in,
    enrollment_harness,
    only,
)
from tests.support.builders.lifecycle_commands import (
    activity,
    delete_wf_cmd,
    pause_wf_cmd,
    reorder_cmd,
    resume_wf_cmd,
    sweep,
    sweep_all,
)
from tests.support.harness import Outcome

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


def contact(n: int) -> RecordRef:
    return RecordRef(type=RecordType.CONTACT, id=f"c-{n}")


async def five_enrolled(h: EnrollmentHarness) -> None:
    await h.given(apply_cmd(definition()), *(enroll_cmd(contact(n)) for n in range(5)))


def exited(rounds: list[Outcome]) -> list[EnrollmentExited]:
    return [m for r in rounds for m in r.of_type(EnrollmentExited)]


async def test_pausing_a_workflow_answers_and_exits_every_live_enrollment_in_chunks(
    h: EnrollmentHarness,
) -> None:
    await five_enrolled(h)
    command = pause_wf_cmd()

    (changed,) = (await h.when(command)).published
    rounds = await sweep_all(h, limit=2)

    assert isinstance(changed, WorkflowStatusChanged)
    assert (changed.payload.status, changed.payload.live_enrollments) == (WorkflowStatus.PAUSED, 5)
    assert changed.causation_id == command.message_id
    exits = exited(rounds)
    assert len(exits) == 5
    assert {(e.payload.reason, e.payload.source, e.payload.actor) for e in exits} == {
        (ExitReason.WORKFLOW_PAUSED, ExitSource.WORKFLOW, USER)
    }
    assert {e.causation_id for e in exits} == {command.message_id}
    progress = [only(r, WorkflowExitsProgress).payload for r in rounds]
    assert [(p.exited, p.done) for p in progress] == [(2, False), (4, False), (5, True)]
    assert all(e.status is Status.EXITED for e in h.store.enrollments.values())


async def test_a_paused_workflow_enrolls_no_one_and_resuming_brings_nobody_back(
    h: EnrollmentHarness,
) -> None:
    await five_enrolled(h)
    await h.when(pause_wf_cmd())
    await sweep_all(h)

    refused = only(await h.when(enroll_cmd(contact(7))), EnrollmentRejected)
    resumed = only(await h.when(resume_wf_cmd()), WorkflowStatusChanged)
    again = await h.when(enroll_cmd(contact(9)))

    assert [r.code for r in refused.payload.rejections] == ["workflow_paused"]
    assert resumed.payload.status is WorkflowStatus.RUNNING
    assert [e.status for e in h.store.enrollments.values()].count(Status.ACTIVE) == 1
    assert not again.of_type(EnrollmentRejected)
    assert await sweep_all(h) == []


async def test_an_enrollment_after_a_resume_is_not_exited_by_the_pause_before_it(
    h: EnrollmentHarness,
) -> None:
    await five_enrolled(h)
    await h.when(pause_wf_cmd())
    await h.when(resume_wf_cmd())
    h.now = h.now.replace(minute=h.now.minute + 1)
    await h.when(enroll_cmd(contact(9)))

    rounds = await sweep_all(h)

    assert len(exited(rounds)) == 5
    (late,) = [e for e in h.store.enrollments.values() if e.record == contact(9)]
    assert late.status is Status.ACTIVE


async def test_a_workflow_pause_waits_for_a_granted_send_like_any_exit(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h)
    await h.when(due_evt(enrolled))

    await h.when(pause_wf_cmd())
    (only_round,) = await sweep_all(h)

    revoked = only(only_round, EnrollmentDispatchRevoked)
    assert revoked.payload.reason is ExitReason.WORKFLOW_PAUSED
    progress = only(only_round, WorkflowExitsProgress).payload
    assert (progress.exited, progress.waiting, progress.done) == (0, 1, True)
    saved = h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert saved.exiting


async def test_deleting_a_workflow_exits_everyone_and_refuses_everything_after(
    h: EnrollmentHarness,
) -> None:
    await five_enrolled(h)

    deleted = only(await h.when(delete_wf_cmd()), WorkflowStatusChanged)
    exits = exited(await sweep_all(h))
    later = await h.when(
        pause_wf_cmd(),
        resume_wf_cmd(),
        delete_wf_cmd(),
        apply_cmd(definition(0, 48)),
        enroll_cmd(contact(7)),
    )

    assert deleted.payload.status is WorkflowStatus.DELETED
    assert {e.payload.reason for e in exits} == {ExitReason.WORKFLOW_DELETED}
    assert len(exits) == 5
    assert answers(later) == ["workflow_deleted"] * 4
    rejected = only(later, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["workflow_deleted"]
    assert h.store.versions  # history and versions stay


async def test_pausing_twice_or_resuming_a_running_workflow_is_answered(
    h: EnrollmentHarness,
) -> None:
    await h.given(apply_cmd(definition()))

    outcome = await h.when(
        resume_wf_cmd(), pause_wf_cmd(), pause_wf_cmd(), pause_wf_cmd(workflow_id="nowhere")
    )

    assert answers(outcome) == ["not_paused", "already_paused", "unknown_workflow"]
    assert len(outcome.of_type(WorkflowStatusChanged)) == 1
    refused = outcome.of_type(CommandRefused)
    assert [r.payload.command_type for r in refused] == [
        "workflow.resume",
        "workflow.pause",
        "workflow.pause",
    ]


async def test_a_workflow_is_active_while_it_has_a_live_enrollment(
    h: EnrollmentHarness,
) -> None:
    await h.given(apply_cmd(definition()))
    assert (await activity(h)).published == []

    await h.when(enroll_cmd())
    (became_active,) = (await activity(h)).published
    assert (await activity(h)).published == []
    await h.when(pause_wf_cmd())
    await sweep_all(h)
    (became_inactive,) = (await activity(h)).published

    assert isinstance(became_active, WorkflowActivityChanged)
    assert isinstance(became_inactive, WorkflowActivityChanged)
    assert (became_active.payload.active, became_inactive.payload.active) == (True, False)
    assert became_active.message_id != became_inactive.message_id


async def test_reordering_puts_the_named_workflows_first_and_the_rest_after(
    h: EnrollmentHarness,
) -> None:
    await h.given(*(apply_cmd(definition(workflow_id=w)) for w in ("a", "b", "c", "d")))

    outcome = await h.when(reorder_cmd("c", "a"))
    again = await h.when(reorder_cmd("c", "a"))
    unknown = await h.when(reorder_cmd("a", "zz"))

    reordered = only(outcome, WorkflowsReordered)
    assert reordered.payload.workflow_ids == ("c", "a", "b", "d")
    assert reordered.partition_key() == f"{ACCOUNT}/workflows"
    assert answers(again) == ["unchanged"]
    assert answers(unknown) == ["unknown_workflow"]
    assert changes(unknown) == []


async def test_a_deleted_workflow_leaves_the_order(h: EnrollmentHarness) -> None:
    await h.given(*(apply_cmd(definition(workflow_id=w)) for w in ("a", "b", "c")))
    await h.when(delete_wf_cmd("b"))

    outcome = await h.when(reorder_cmd("c"))

    assert only(outcome, WorkflowsReordered).payload.workflow_ids == ("c", "a")


async def test_a_sweep_round_with_no_sweep_does_nothing(h: EnrollmentHarness) -> None:
    loaded, outcome = await sweep(h)

    assert (loaded, outcome.published) == (None, [])
