"""Enrollment handlers on the fake store: the owner of workflows is deleted or downgraded
(``user.changed``, or ``workflow.remove_owner``); the account says whether their
enrollments exit or the workflows are reassigned."""

from __future__ import annotations

import pytest

from services.enrollment.domain import Status
from shared.contracts import RecordRef, RecordType
from shared.contracts.commands import ExitReason, OwnerRemovalPolicy
from shared.contracts.events import (
    EnrollmentExited,
    WorkflowApplied,
)
from shared.contracts.inbound import UserChange, UserChanged, UserChangedPayload
from shared.contracts.lifecycle_events import (
    AccountOwnerRemovalSet,
    WorkflowExitsProgress,
    WorkflowOwnerRemoved,
)
from shared.contracts.workflow import WorkflowDefinition
from tests.support.builders.enrollment_commands import apply_cmd, definition, enroll_cmd
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    answers,
    enrollment_harness,
    only,
)
from tests.support.builders.lifecycle_commands import (
    owner_policy_cmd,
    remove_owner_cmd,
    sweep_all,
)

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


def owned_by(user_id: str | None, workflow_id: str) -> WorkflowDefinition:
    return definition(workflow_id=workflow_id).model_copy(update={"owner_user_id": user_id})


async def three_workflows(h: EnrollmentHarness) -> None:
    await h.given(
        apply_cmd(owned_by("u-7", "ann")),
        apply_cmd(owned_by("u-7", "bob")),
        apply_cmd(owned_by("u-8", "kim")),
        *(
            enroll_cmd(RecordRef(type=RecordType.CONTACT, id=f"c-{n}"), workflow_id=w)
            for n in range(3)
            for w in ("ann", "bob", "kim")
        ),
    )


async def test_by_default_the_removed_owner_s_enrollments_exit_with_owner_removed(
    h: EnrollmentHarness,
) -> None:
    await three_workflows(h)
    command = remove_owner_cmd("u-7")

    outcome = await h.when(command)
    exits = [m for r in await sweep_all(h) for m in r.of_type(EnrollmentExited)]

    removed = outcome.of_type(WorkflowOwnerRemoved)
    assert [(r.payload.workflow_id, r.payload.live_enrollments) for r in removed] == [
        ("ann", 3),
        ("bob", 3),
    ]
    assert len(exits) == 6
    assert {e.payload.workflow_id for e in exits} == {"ann", "bob"}
    assert {(e.payload.reason, e.causation_id) for e in exits} == {
        (ExitReason.OWNER_REMOVED, command.message_id)
    }
    kims = [e for e in h.store.enrollments.values() if e.workflow_id == "kim"]
    assert {e.status for e in kims} == {Status.ACTIVE}


async def test_an_account_set_to_reassign_gives_the_workflows_to_the_named_user(
    h: EnrollmentHarness,
) -> None:
    await three_workflows(h)
    setting = only(
        await h.when(owner_policy_cmd(OwnerRemovalPolicy.REASSIGN, "u-9")), AccountOwnerRemovalSet
    )

    outcome = await h.when(remove_owner_cmd("u-7"))

    assert (setting.payload.policy, setting.payload.reassign_to_user_id) == (
        OwnerRemovalPolicy.REASSIGN,
        "u-9",
    )
    applied = outcome.of_type(WorkflowApplied)
    assert [(a.payload.definition.workflow_id, a.payload.version) for a in applied] == [
        ("ann", 2),
        ("bob", 2),
    ]
    assert {a.payload.definition.owner_user_id for a in applied} == {"u-9"}
    assert {r.payload.reassigned_to_user_id for r in outcome.of_type(WorkflowOwnerRemoved)} == {
        "u-9"
    }
    assert await sweep_all(h) == []
    assert all(e.status is Status.ACTIVE for e in h.store.enrollments.values())


async def test_a_user_who_owns_no_workflow_is_answered_so(h: EnrollmentHarness) -> None:
    await three_workflows(h)

    outcome = await h.when(remove_owner_cmd("u-nobody"))

    assert answers(outcome) == ["owns_no_workflow"]


async def test_a_removal_answered_once_exits_nothing_more_when_repeated(
    h: EnrollmentHarness,
) -> None:
    await three_workflows(h)
    await h.when(remove_owner_cmd("u-7"))
    first = await sweep_all(h)

    await h.when(remove_owner_cmd("u-7"))
    second = await sweep_all(h)

    assert sum(len(r.of_type(EnrollmentExited)) for r in first) == 6
    assert [r.of_type(EnrollmentExited) for r in second] == [[], []]
    assert [only(r, WorkflowExitsProgress).payload.done for r in second] == [True, True]


async def test_a_user_deleted_in_the_crm_removes_the_owner_of_their_workflows(
    h: EnrollmentHarness,
) -> None:
    await three_workflows(h)
    changed = UserChanged.create(
        account_id=ACCOUNT, payload=UserChangedPayload(user_id="u-7", change=UserChange.DOWNGRADED)
    )

    outcome = await h.when(changed)
    exits = [m for r in await sweep_all(h) for m in r.of_type(EnrollmentExited)]

    removed = outcome.of_type(WorkflowOwnerRemoved)
    assert [r.payload.workflow_id for r in removed] == ["ann", "bob"]
    assert {r.causation_id for r in removed} == {changed.message_id}
    assert len(exits) == 6
    assert {(e.payload.reason, e.causation_id) for e in exits} == {
        (ExitReason.OWNER_REMOVED, changed.message_id)
    }
