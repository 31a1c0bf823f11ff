"""Enrollment handlers on the fake store: exits, and accounts that never touch each other.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import uuid

import pytest

from services.enrollment.domain import Status
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import EnrollmentEnrolled, EnrollmentExited, EnrollmentRejected
from tests.support.builders.enrollment_commands import (
    BOB,
    apply_cmd,
    definition,
    enroll_cmd,
    exit_cmd,
    pause_cmd,
    resume_cmd,
    sent_evt,
)
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, T0, USER
from tests.support.builders.enrollment_setup import (
    TOO_LONG,
    EnrollmentHarness,
    answers,
    changes,
    enrolled_in,
    enrollment_harness,
    expire,
    only,
)

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


async def test_an_exit_publishes_one_exited_event_with_its_cause(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    command = exit_cmd()

    (exited,) = (await h.when(command)).published

    assert isinstance(exited, EnrollmentExited)
    assert exited.payload.enrollment_id == enrolled.payload.enrollment_id
    assert exited.payload.reason is ExitReason.REPLIED
    assert exited.payload.source is ExitSource.TRIGGER
    assert exited.payload.actor == SYSTEM_ACTOR
    assert exited.payload.triggering_event == command.payload.triggering_event
    assert exited.payload.steps_completed == 0
    assert exited.causation_id == command.message_id
    key = (enrolled.account_id, enrolled.payload.enrollment_id)
    saved = h.store.enrollments[key]
    assert (saved.status, saved.exit_reason, saved.ended_at) == (
        Status.EXITED,
        ExitReason.REPLIED,
        T0,
    )
    assert h.store.exits[key] == (
        ExitSource.TRIGGER,
        SYSTEM_ACTOR,
        command.payload.triggering_event,
    )


async def test_an_exit_s_history_keeps_its_reason_source_actor_and_trigger(
    h: EnrollmentHarness,
) -> None:
    await enrolled_in(h)
    command = exit_cmd()

    await h.when(command)

    entry = h.store.entries[-1]
    trigger = command.payload.triggering_event
    assert trigger is not None
    assert (entry.event_type, entry.caused_by, entry.at) == (
        EnrollmentExited.TYPE,
        command.message_id,
        T0,
    )
    assert entry.detail == {
        "step": 0,
        "status": "exited",
        "reason": "replied",
        "source": "trigger",
        "actor": SYSTEM_ACTOR.model_dump(),
        "triggering_event": trigger.model_dump(mode="json"),
    }


async def test_a_replayed_exit_gets_the_same_event_id_and_a_new_one_changes_nothing() -> None:
    setup = (apply_cmd(definition()), enroll_cmd())
    command = exit_cmd()
    first, second = enrollment_harness(), enrollment_harness()
    await first.given(*setup)
    await second.given(*setup)  # the same state again, as after a rolled-back attempt

    once = (await first.when(command)).published
    replayed = (await second.when(command)).published

    assert len(once) == 1
    assert [m.message_id for m in once] == [m.message_id for m in replayed]
    assert answers(await first.when(command)) == ["already_exited"]
    again = await first.when(exit_cmd())
    assert (changes(again), answers(again)) == ([], ["already_exited"])


async def test_an_exit_without_workflow_leaves_every_live_workflow_of_the_record(
    h: EnrollmentHarness,
) -> None:
    trial = await enrolled_in(h, definition(workflow_id="trial"))
    nurture = await enrolled_in(h, definition(0, workflow_id="nurture"))
    await h.when(sent_evt(nurture, 0, T0))  # completes
    onboarding = await enrolled_in(h, definition(workflow_id="onboarding"))
    bobs = await enrolled_in(h, definition(workflow_id="onboarding"), record=BOB)

    published = (await h.when(exit_cmd(workflow_id=None))).published

    exited = {m.payload.enrollment_id for m in published if isinstance(m, EnrollmentExited)}
    assert exited == {trial.payload.enrollment_id, onboarding.payload.enrollment_id}
    assert len(published) == 2
    enrollments = h.store.enrollments
    assert enrollments[(nurture.account_id, nurture.payload.enrollment_id)].status is (
        Status.COMPLETED
    )
    assert enrollments[(bobs.account_id, bobs.payload.enrollment_id)].status is Status.ACTIVE


async def test_a_workflow_that_agents_may_not_stop_still_exits_on_triggers(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h, definition(agents_may_stop=False))

    manual = await h.when(exit_cmd(source=ExitSource.MANUAL, actor=USER))
    assert (changes(manual), answers(manual)) == ([], ["agents_may_not_stop"])
    assert (
        h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.ACTIVE
    )
    (exited,) = (await h.when(exit_cmd(source=ExitSource.TRIGGER))).published
    assert isinstance(exited, EnrollmentExited)


async def test_a_run_of_exits_for_one_record_exits_it_once(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    first, second = exit_cmd(), exit_cmd()
    h.store.calls.clear()

    published = (await h.when(first, second)).published

    exited = [m for m in published if isinstance(m, EnrollmentExited)]
    assert [e.causation_id for e in exited] == [first.message_id]
    assert (
        h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.EXITED
    )
    assert h.store.calls == [
        "live_enrollments_for_update",
        "workflow_versions",
        "save_exits",
        "add_history",
    ]


# --- accounts -------------------------------------------------------------------------


async def test_nothing_crosses_accounts(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    before = dict(h.store.enrollments)
    history = len(h.store.history)

    for command in (
        exit_cmd(account_id=OTHER_ACCOUNT),
        exit_cmd(workflow_id=None, account_id=OTHER_ACCOUNT),
        pause_cmd(account_id=OTHER_ACCOUNT),
        resume_cmd(account_id=OTHER_ACCOUNT),
        sent_evt(enrolled, 0, T0, account_id=OTHER_ACCOUNT),
    ):
        assert changes(await h.when(command)) == [], command.type
    # Parked (the other account has no such workflow yet), then rejected; our apply
    # releases nothing of theirs.
    assert (await h.when(enroll_cmd(account_id=OTHER_ACCOUNT))).published == []
    await h.when(apply_cmd(definition(0, 48)))
    (rejected,) = (await expire(h, after=TOO_LONG)).published

    assert isinstance(rejected, EnrollmentRejected)
    assert rejected.account_id == OTHER_ACCOUNT
    assert [r.code for r in rejected.payload.rejections] == ["unknown_workflow"]
    assert h.store.enrollments == before
    assert len(h.store.history) == history + 1  # only the other account's rejection


async def test_two_accounts_with_the_same_ids_stay_apart(h: EnrollmentHarness) -> None:
    """Same workflow id, record id and enroll message id (upstream ids are per account)."""
    message_id = uuid.uuid4()
    for account_id in (ACCOUNT, OTHER_ACCOUNT):
        await h.when(apply_cmd(definition(0, 24), account_id=account_id))
    ours = only(await h.when(enroll_cmd(message_id=message_id)), EnrollmentEnrolled)
    theirs = only(
        await h.when(enroll_cmd(account_id=OTHER_ACCOUNT, message_id=message_id)),
        EnrollmentEnrolled,
    )
    assert ours.payload.enrollment_id != theirs.payload.enrollment_id
    assert ours.message_id != theirs.message_id

    exited = only(await h.when(exit_cmd(account_id=OTHER_ACCOUNT)), EnrollmentExited)

    assert exited.payload.enrollment_id == theirs.payload.enrollment_id
    assert h.store.enrollments[(ACCOUNT, ours.payload.enrollment_id)].status is Status.ACTIVE
    assert h.store.enrollments[(OTHER_ACCOUNT, theirs.payload.enrollment_id)].status is (
        Status.EXITED
    )
