"""Enrollment handlers on the fake store: a due step is granted to messaging
(``enrollment.step_granted``); an exit decided while that grant is out revokes it
(``enrollment.dispatch_revoked``) and commits once messaging answers, or once the lease
has lapsed (the lapse loop's round), so no send starts after an exit commits.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from services.enrollment.dispatch import dispatch_id_for
from services.enrollment.domain import Status
from services.enrollment.history import EXIT_PENDING
from shared.contracts import SYSTEM_ACTOR, Message
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    CancelReason,
    EnrollmentDispatchRevoked,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentStepCompleted,
    EnrollmentStepGranted,
    FailureKind,
)
from tests.support.builders.enrollment_commands import (
    apply_cmd,
    definition,
    enroll_cmd,
    exit_cmd,
    pause_cmd,
    resume_cmd,
)
from tests.support.builders.enrollment_dispatch import (
    cancelled_for,
    due_evt,
    failed_for,
    sent_for,
)
from tests.support.builders.enrollment_dispatch_setup import exiting_in, granted_in, saved
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, T0
from tests.support.builders.enrollment_setup import (
    LEASE,
    EnrollmentHarness,
    answers,
    changes,
    enrolled_in,
    enrollment_harness,
    only,
)

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


# --- grants ----------------------------------------------------------------------------


async def test_a_due_step_is_granted_once_keyed_by_its_record(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    due = due_evt(enrolled)
    history = list(h.store.entries)

    outcome = await h.when(due)

    [grant] = outcome.published
    assert isinstance(grant, EnrollmentStepGranted)
    p = grant.payload
    assert (p.enrollment_id, p.record, p.workflow_id) == (
        enrolled.payload.enrollment_id,
        enrolled.payload.record,
        "onboarding",
    )
    assert (p.step_index, p.step_id, p.channel, p.due_at) == (0, "s0", due.payload.channel, T0)
    assert p.dispatch_id == dispatch_id_for(ACCOUNT, due.message_id, p.enrollment_id)
    assert (p.lease_until, p.renewal) == (T0 + LEASE, False)
    assert grant.causation_id == due.message_id
    assert grant.partition_key() == enrolled.partition_key()
    dispatch = saved(h, enrolled).dispatch
    assert dispatch is not None
    assert (dispatch.dispatch_id, dispatch.step_index, dispatch.lease_until) == (
        p.dispatch_id,
        0,
        T0 + LEASE,
    )
    assert h.store.entries == history  # a grant is plumbing, not the enrollment's story


async def test_a_replayed_step_due_is_granted_as_the_same_dispatch() -> None:
    """Replayed from scratch (a restore, a reprocessed topic): the same grant, same ids."""
    history, due_id = (apply_cmd(definition()), enroll_cmd()), uuid.uuid4()
    grants = []
    for h in (enrollment_harness(), enrollment_harness()):
        enrolled = only(await h.when(*history), EnrollmentEnrolled)
        grants.append(
            only(await h.when(due_evt(enrolled, message_id=due_id)), EnrollmentStepGranted)
        )

    first, replayed = grants
    assert (replayed.message_id, replayed.payload) == (first.message_id, first.payload)
    assert first.payload.dispatch_id == dispatch_id_for(
        ACCOUNT, due_id, first.payload.enrollment_id
    )


async def test_a_step_due_seen_again_or_fired_twice_grants_nothing_more(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h)
    due = due_evt(enrolled)

    outcome = await h.when(due, due, due_evt(enrolled))

    [grant] = outcome.published
    assert isinstance(grant, EnrollmentStepGranted)
    assert grant.causation_id == due.message_id
    assert (await h.when(due, due_evt(enrolled))).published == []
    dispatch = saved(h, enrolled).dispatch
    assert dispatch is not None
    assert dispatch.dispatch_id == grant.payload.dispatch_id


async def test_a_due_step_of_a_paused_or_ended_enrollment_or_another_step_is_not_granted(
    h: EnrollmentHarness,
) -> None:
    paused = await enrolled_in(h)
    await h.when(pause_cmd())
    ended = await enrolled_in(h, definition(workflow_id="other"))
    await h.when(exit_cmd(workflow_id="other"))
    before = h.store.snapshot()

    outcome = await h.when(due_evt(paused), due_evt(ended), due_evt(paused, 1))

    assert outcome.published == []
    assert h.store.snapshot() == before


async def test_a_due_step_never_crosses_accounts(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    before = h.store.snapshot()

    assert (await h.when(due_evt(enrolled, account_id=OTHER_ACCOUNT))).published == []
    assert h.store.snapshot() == before


# --- an exit while a grant is out ------------------------------------------------------


async def test_an_exit_while_granted_revokes_the_dispatch_and_waits(h: EnrollmentHarness) -> None:
    enrolled, grant = await granted_in(h)
    command = exit_cmd()

    outcome = await h.when(command)

    [revoked] = outcome.published
    assert isinstance(revoked, EnrollmentDispatchRevoked)
    p = revoked.payload
    assert (p.dispatch_id, p.step_index, p.step_id, p.reason) == (
        grant.payload.dispatch_id,
        0,
        "s0",
        ExitReason.REPLIED,
    )
    assert revoked.causation_id == command.message_id
    assert revoked.partition_key() == enrolled.partition_key()
    waiting = saved(h, enrolled)
    assert (waiting.status, waiting.exiting) == (Status.ACTIVE, True)
    assert waiting.pending_exit is not None
    assert waiting.pending_exit.triggering_event == command.payload.triggering_event
    assert h.store.exits == {}
    [entry] = [e for e in h.store.entries if e.event_type == EXIT_PENDING]
    assert entry.detail["dispatch_id"] == str(grant.payload.dispatch_id)
    assert entry.caused_by == command.message_id


async def test_an_exit_without_a_grant_commits_at_once(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)

    outcome = await h.when(exit_cmd())

    assert [m.type for m in outcome.published] == [EnrollmentExited.TYPE]
    assert saved(h, enrolled).status is Status.EXITED


async def test_a_second_exit_while_exiting_changes_nothing_and_is_answered(
    h: EnrollmentHarness,
) -> None:
    await exiting_in(h)
    before = h.store.snapshot()

    outcome = await h.when(exit_cmd(), pause_cmd(), resume_cmd())

    assert changes(outcome) == []
    assert answers(outcome) == ["exiting", "exiting", "not_paused"]
    assert h.store.snapshot() == before


async def test_a_grant_then_an_exit_in_one_run_revokes_and_an_exit_then_a_grant_grants_nothing(
    h: EnrollmentHarness,
) -> None:
    first = await enrolled_in(h)

    granted_then_exit = await h.when(due_evt(first), exit_cmd())

    assert [m.type for m in granted_then_exit.published] == [
        EnrollmentStepGranted.TYPE,
        EnrollmentDispatchRevoked.TYPE,
    ]
    second = await enrolled_in(h, definition(workflow_id="other"))
    exit_then_grant = await h.when(exit_cmd(workflow_id="other"), due_evt(second))
    assert [m.type for m in exit_then_grant.published] == [EnrollmentExited.TYPE]
    assert saved(h, second).dispatch is None


async def test_the_granted_step_sent_while_exiting_completes_it_then_exits(
    h: EnrollmentHarness,
) -> None:
    enrolled, grant, revoked = await exiting_in(h)
    sent = sent_for(grant, T0 + timedelta(seconds=3))

    outcome = await h.when(sent)

    assert [m.type for m in outcome.published] == [
        EnrollmentStepCompleted.TYPE,
        EnrollmentExited.TYPE,
    ]
    completed = only(outcome, EnrollmentStepCompleted)
    assert (completed.payload.step_index, completed.payload.provider_message_id) == (
        0,
        sent.payload.provider_message_id,
    )
    exited = only(outcome, EnrollmentExited).payload
    assert (exited.reason, exited.source, exited.actor) == (
        ExitReason.REPLIED,
        ExitSource.TRIGGER,
        SYSTEM_ACTOR,
    )
    assert (exited.steps_completed, exited.unsent_step) == (1, None)
    assert exited.triggering_event is not None
    assert exited.triggering_event.type == "email.replied"  # the exit's cause, not the send
    ended = saved(h, enrolled)
    assert (ended.status, ended.steps_completed, ended.exit_reason) == (
        Status.EXITED,
        1,
        ExitReason.REPLIED,
    )
    assert (ended.dispatch, ended.pending_exit) == (None, None)
    key = (ACCOUNT, enrolled.payload.enrollment_id)
    assert h.store.exits[key] == (ExitSource.TRIGGER, SYSTEM_ACTOR, exited.triggering_event)
    assert [e.event_type for e in h.store.entries][-2:] == [
        EnrollmentStepCompleted.TYPE,
        EnrollmentExited.TYPE,
    ]
    assert revoked.payload.dispatch_id == grant.payload.dispatch_id
    # Any later answer is an echo.
    assert (await h.when(sent, cancelled_for(grant), failed_for(grant))).published == []


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (lambda g: cancelled_for(g, CancelReason.DISPATCH_REVOKED), "dispatch_revoked"),
        (lambda g: failed_for(g, FailureKind.HARD_BOUNCE), "hard_bounce"),
    ],
)
async def test_the_granted_step_unsent_while_exiting_exits_with_the_exit_s_reason(
    h: EnrollmentHarness, answer: Callable[[EnrollmentStepGranted], Message], kind: str
) -> None:
    enrolled, grant, _ = await exiting_in(h)
    message = answer(grant)

    outcome = await h.when(message, message)

    [exited] = outcome.published
    assert isinstance(exited, EnrollmentExited)
    assert (exited.payload.reason, exited.payload.steps_completed) == (ExitReason.REPLIED, 0)
    assert exited.payload.unsent_step is not None
    assert (exited.payload.unsent_step.step_index, exited.payload.unsent_step.kind) == (0, kind)
    assert exited.causation_id == message.message_id
    assert saved(h, enrolled).status is Status.EXITED


async def test_an_exit_and_its_answer_in_one_batch_revoke_then_exit(h: EnrollmentHarness) -> None:
    enrolled, grant = await granted_in(h)

    outcome = await h.when(exit_cmd(), sent_for(grant))

    assert [m.type for m in outcome.published] == [
        EnrollmentDispatchRevoked.TYPE,
        EnrollmentStepCompleted.TYPE,
        EnrollmentExited.TYPE,
    ]
    assert only(outcome, EnrollmentExited).payload.steps_completed == 1
    assert saved(h, enrolled).status is Status.EXITED
