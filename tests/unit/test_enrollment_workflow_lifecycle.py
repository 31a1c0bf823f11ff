"""Pure workflow lifecycle decisions: pause, resume and delete a workflow, the chunks of
exits they cause, enrolls into a closed workflow, the account's order of workflows."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from services.enrollment.domain import (
    Admitted,
    Dispatch,
    PendingExit,
    Refused,
    Status,
    Unchanged,
    decide_enrollment,
)
from services.enrollment.exits import Exited, ExitPending
from services.enrollment.lifecycle import (
    Reordered,
    StatusChanged,
    Sweep,
    WorkflowState,
    closed_to_enrollment,
    decide_reorder,
    decide_status,
    sweep_chunk,
)
from shared.contracts import Actor, ActorKind
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)
from tests.support.builders.enrollment_domain import ACCOUNT, CONTACT, NOW, enrollment, workflow

pytestmark = pytest.mark.unit

USER = Actor(kind=ActorKind.USER, id="u-1")
SWEEP_ID = uuid.uuid4()


def state(status: WorkflowStatus = WorkflowStatus.RUNNING, live: int = 3) -> WorkflowState:
    return WorkflowState(ACCOUNT, "onboarding", status, live)


def change(current: WorkflowState | None, wanted: WorkflowStatus) -> StatusChanged | Unchanged:
    return decide_status(
        current, wanted, workflow_id="onboarding", actor=USER, sweep_id=SWEEP_ID, now=NOW
    )


@pytest.mark.parametrize(
    ("wanted", "reason"),
    [
        (WorkflowStatus.PAUSED, ExitReason.WORKFLOW_PAUSED),
        (WorkflowStatus.DELETED, ExitReason.WORKFLOW_DELETED),
    ],
)
def test_pausing_or_deleting_a_workflow_starts_the_exits_of_everyone_live(
    wanted: WorkflowStatus, reason: ExitReason
) -> None:
    decision = change(state(), wanted)

    assert isinstance(decision, StatusChanged)
    assert decision.state.status is wanted
    assert decision.sweep == Sweep(SWEEP_ID, ACCOUNT, "onboarding", reason, USER, cutoff=NOW)


def test_a_pause_sweeps_an_enrollment_stamped_later_by_another_replica_s_clock() -> None:
    ahead = NOW + timedelta(milliseconds=40)
    current = replace(state(), latest_enrolled_at=ahead)

    decision = change(current, WorkflowStatus.PAUSED)

    assert isinstance(decision, StatusChanged)
    assert decision.sweep is not None
    assert decision.sweep.cutoff == ahead


def test_resuming_a_paused_workflow_exits_no_one_and_brings_no_one_back() -> None:
    decision = change(state(WorkflowStatus.PAUSED, live=0), WorkflowStatus.RUNNING)

    assert isinstance(decision, StatusChanged)
    assert (decision.state.status, decision.sweep) == (WorkflowStatus.RUNNING, None)


@pytest.mark.parametrize(
    ("current", "wanted", "code"),
    [
        (None, WorkflowStatus.PAUSED, "unknown_workflow"),
        (WorkflowStatus.PAUSED, WorkflowStatus.PAUSED, "already_paused"),
        (WorkflowStatus.RUNNING, WorkflowStatus.RUNNING, "not_paused"),
        (WorkflowStatus.DELETED, WorkflowStatus.RUNNING, "workflow_deleted"),
        (WorkflowStatus.DELETED, WorkflowStatus.PAUSED, "workflow_deleted"),
        (WorkflowStatus.DELETED, WorkflowStatus.DELETED, "workflow_deleted"),
    ],
)
def test_a_status_change_that_cannot_apply_says_why(
    current: WorkflowStatus | None, wanted: WorkflowStatus, code: str
) -> None:
    decision = change(None if current is None else state(current), wanted)

    assert isinstance(decision, Unchanged)
    assert decision.code == code


def sweep(limit_exited: int = 0) -> Sweep:
    return Sweep(
        SWEEP_ID, ACCOUNT, "onboarding", ExitReason.WORKFLOW_PAUSED, USER, NOW, limit_exited
    )


def test_a_chunk_exits_each_enrollment_through_the_normal_exit_path() -> None:
    granted = replace(enrollment(), dispatch=Dispatch(uuid.uuid4(), 0, "s0", lease_until=NOW))
    live = [enrollment(), enrollment(Status.PAUSED), granted]

    progress, decided = sweep_chunk(sweep(), live, limit=3, now=NOW)

    assert [type(d) for d in decided] == [Exited, Exited, ExitPending]
    exited = [d for d in decided if isinstance(d, Exited)]
    assert {(d.reason, d.source, d.actor) for d in exited} == {
        (ExitReason.WORKFLOW_PAUSED, ExitSource.WORKFLOW, USER)
    }
    assert (progress.exited, progress.waiting, progress.chunks, progress.done) == (2, 1, 1, False)


def test_a_short_chunk_ends_the_sweep_and_counts_add_up() -> None:
    progress, decided = sweep_chunk(sweep(4), [enrollment()], limit=3, now=NOW)

    assert len(decided) == 1
    assert (progress.exited, progress.done) == (5, True)


def test_an_exiting_enrollment_in_a_chunk_is_left_to_its_own_exit() -> None:
    exiting = replace(
        enrollment(),
        dispatch=Dispatch(uuid.uuid4(), 0, "s0", lease_until=NOW),
        pending_exit=PendingExit(ExitReason.REPLIED, ExitSource.TRIGGER, USER, None, NOW),
    )

    progress, decided = sweep_chunk(sweep(), [exiting], limit=3, now=NOW)

    assert (decided, progress.exited, progress.done) == ([], 0, True)


def admitted() -> Admitted | Refused:
    return decide_enrollment(
        workflow=workflow(0),
        workflow_id="onboarding",
        record=CONTACT,
        account_id=ACCOUNT,
        previous=[],
        now=NOW,
        enrollment_id=uuid.uuid4(),
        contact=None,
        actor=USER,
    )


@pytest.mark.parametrize("status", [WorkflowStatus.PAUSED, WorkflowStatus.DELETED])
def test_a_closed_workflow_refuses_an_enroll_with_its_status_first(status: WorkflowStatus) -> None:
    refused = closed_to_enrollment(admitted(), status)
    twice = closed_to_enrollment(Refused((), ACCOUNT, "onboarding", CONTACT, USER), status)

    assert isinstance(refused, Refused)
    assert [r.code for r in refused.rejections] == [f"workflow_{status.value}"]
    assert isinstance(twice, Refused)
    assert twice.rejections[0].code == f"workflow_{status.value}"


@pytest.mark.parametrize("status", [WorkflowStatus.RUNNING, None])
def test_a_running_or_unknown_workflow_leaves_the_enroll_decision_as_it_was(
    status: WorkflowStatus | None,
) -> None:
    decision = admitted()

    assert closed_to_enrollment(decision, status) is decision


def test_reordering_puts_the_named_first_and_keeps_the_rest_in_their_order() -> None:
    decision = decide_reorder(["a", "b", "c", "d"], ("d", "b", "d"), account_id=ACCOUNT, actor=USER)

    assert decision == Reordered(ACCOUNT, ("d", "b", "a", "c"), USER)


@pytest.mark.parametrize(
    ("wanted", "code"), [(("a", "x"), "unknown_workflow"), (("a", "b"), "unchanged")]
)
def test_a_reorder_that_cannot_apply_says_why(wanted: tuple[str, ...], code: str) -> None:
    decision = decide_reorder(["a", "b"], wanted, account_id=ACCOUNT, actor=USER)

    assert isinstance(decision, Unchanged)
    assert decision.code == code
