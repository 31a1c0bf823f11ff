"""Enrollment's dispatch handlers: pauses, renewals and the lapse loop."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from services.enrollment.dispatch_loop import lapse_round
from services.enrollment.domain import Status
from services.enrollment.ports import EnrollmentStore
from shared.contracts.commands import ExitReason
from shared.contracts.events import (
    CancelReason,
    EnrollmentExited,
    EnrollmentResumed,
    EnrollmentStepGranted,
    EnrollmentStepScheduled,
)
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_commands import (
    pause_cmd,
    resume_cmd,
)
from tests.support.builders.enrollment_dispatch import (
    cancelled_for,
    deferred_for,
    due_evt,
    sent_for,
)
from tests.support.builders.enrollment_dispatch_setup import (
    MS,
    SKEW,
    exiting_in,
    granted_in,
    lapse,
    saved,
)
from tests.support.builders.enrollment_events import OTHER_ACCOUNT, T0
from tests.support.builders.enrollment_setup import (
    LEASE,
    EnrollmentHarness,
    enrollment_harness,
    only,
)
from tests.support.harness import published_by

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


# --- pauses and the grant ---------------------------------------------------------------


async def test_a_send_cancelled_for_a_pause_ends_the_grant_and_a_resume_grants_again(
    h: EnrollmentHarness,
) -> None:
    enrolled, grant = await granted_in(h)
    await h.when(pause_cmd())

    assert (await h.when(cancelled_for(grant, CancelReason.ENROLLMENT_PAUSED))).published == []
    assert (saved(h, enrolled).status, saved(h, enrolled).dispatch) == (Status.PAUSED, None)
    resumed = await h.when(resume_cmd())
    assert [m.type for m in resumed.published] == [
        EnrollmentResumed.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    again = only(await h.when(due_evt(enrolled)), EnrollmentStepGranted)
    assert again.payload.dispatch_id != grant.payload.dispatch_id


async def test_a_step_due_again_before_the_pause_s_cancel_still_gets_its_step_sent(
    h: EnrollmentHarness,
) -> None:
    """Messaging cancelled the granted send for the pause, but enrollment hears of it only
    after the resume, and after the scheduler fired the step again (refused: the grant
    was still out). Nothing else will ever fire that step: the cancellation must lead to
    a new grant (or a new schedule), or the enrollment waits at that step forever."""
    enrolled, grant = await granted_in(h)
    await h.when(pause_cmd())
    await h.when(resume_cmd())
    assert (await h.when(due_evt(enrolled))).published == []  # the old grant is still out

    outcome = await h.when(cancelled_for(grant, CancelReason.ENROLLMENT_PAUSED))

    rearmed = outcome.of_type(EnrollmentStepGranted) + outcome.of_type(EnrollmentStepScheduled)
    assert [m.payload.step_index for m in rearmed] == [0], (
        f"the enrollment is {saved(h, enrolled).status.value} at step 0 with no grant and "
        "nothing scheduled: stalled"
    )
    for again in outcome.of_type(EnrollmentStepGranted):
        assert again.payload.dispatch_id != grant.payload.dispatch_id
        dispatch = saved(h, enrolled).dispatch
        assert dispatch is not None
        assert dispatch.dispatch_id == again.payload.dispatch_id


# --- renewals ---------------------------------------------------------------------------


@pytest.mark.parametrize("next_attempt", [timedelta(seconds=-30), timedelta(minutes=10)])
async def test_a_deferred_send_is_granted_again_with_a_later_lease(
    h: EnrollmentHarness, next_attempt: timedelta
) -> None:
    enrolled, grant = await granted_in(h)
    h.now = T0 + LEASE + timedelta(seconds=1)
    deferred = deferred_for(grant, next_attempt_at=h.now + next_attempt)

    outcome = await h.when(deferred)

    [renewed] = outcome.published
    assert isinstance(renewed, EnrollmentStepGranted)
    lease_until = max(h.now, h.now + next_attempt) + LEASE
    assert (renewed.payload.dispatch_id, renewed.payload.renewal) == (
        grant.payload.dispatch_id,
        True,
    )
    assert (renewed.payload.step_index, renewed.payload.lease_until) == (0, lease_until)
    assert renewed.payload.lease_until > grant.payload.lease_until
    assert renewed.causation_id == deferred.message_id
    assert renewed.message_id != grant.message_id
    dispatch = saved(h, enrolled).dispatch
    assert dispatch is not None
    assert dispatch.lease_until == lease_until


async def test_a_deferral_of_another_dispatch_or_account_changes_nothing(
    h: EnrollmentHarness,
) -> None:
    enrolled, grant = await granted_in(h)
    stale = grant.model_copy(
        update={"payload": grant.payload.model_copy(update={"dispatch_id": enrolled.message_id})}
    )
    elsewhere = grant.model_copy(update={"account_id": OTHER_ACCOUNT})
    before = h.store.snapshot()

    outcome = await h.when(
        deferred_for(stale, next_attempt_at=T0), deferred_for(elsewhere, next_attempt_at=T0)
    )

    assert outcome.published == []
    assert h.store.snapshot() == before


async def test_a_deferred_send_commits_the_exit_that_waited_for_it(h: EnrollmentHarness) -> None:
    enrolled, grant, _ = await exiting_in(h)
    h.now = T0 + LEASE + timedelta(seconds=1)

    outcome = await h.when(deferred_for(grant, next_attempt_at=h.now))

    assert [m.type for m in outcome.published] == [EnrollmentExited.TYPE]
    exited = only(outcome, EnrollmentExited).payload
    assert (exited.reason, exited.steps_completed, exited.unsent_step) == (
        ExitReason.REPLIED,
        0,
        None,
    )
    assert (saved(h, enrolled).status, saved(h, enrolled).dispatch) == (Status.EXITED, None)


# --- the lapse loop ---------------------------------------------------------------------


async def test_the_lapse_loop_commits_a_waiting_exit_only_after_the_lease_and_skew(
    h: EnrollmentHarness,
) -> None:
    enrolled, grant, revoked = await exiting_in(h)
    lapsed = grant.payload.lease_until - h.now + SKEW

    assert (await lapse(h, at=LEASE)).published == []
    assert (await lapse(h, at=lapsed - MS)).published == []
    assert saved(h, enrolled).exiting
    [exited] = (await lapse(h, at=lapsed + MS)).published

    assert isinstance(exited, EnrollmentExited)
    assert (exited.payload.reason, exited.payload.steps_completed) == (ExitReason.REPLIED, 0)
    assert exited.payload.unsent_step is None
    assert exited.partition_key() == enrolled.partition_key()
    ended = saved(h, enrolled)
    assert (ended.status, ended.ended_at) == (Status.EXITED, h.now + lapsed + MS)
    assert (ended.dispatch, ended.pending_exit) == (None, None)
    assert revoked.payload.dispatch_id == grant.payload.dispatch_id
    # Once: a later round, and messaging's late answer, change nothing.
    assert (await lapse(h, at=lapsed + timedelta(minutes=5))).published == []
    assert (await h.when(cancelled_for(grant), sent_for(grant))).published == []


async def test_the_lapse_loop_leaves_granted_enrollments_that_are_not_exiting(
    h: EnrollmentHarness,
) -> None:
    enrolled, _ = await granted_in(h)
    before = h.store.snapshot()

    assert (await lapse(h, at=timedelta(days=1))).published == []
    assert h.store.snapshot() == before
    assert saved(h, enrolled).status is Status.ACTIVE


async def test_a_lapse_round_publishes_the_same_exit_when_retried(h: EnrollmentHarness) -> None:
    """A round whose transaction failed is run again: its exit keeps its ids."""
    await exiting_in(h)
    at = h.now + LEASE + SKEW + timedelta(seconds=1)
    retried: UnitOfWork[EnrollmentStore] = UnitOfWork(None, copy.deepcopy(h.store))

    first = (await lapse(h, at=at - h.now)).published
    await lapse_round(retried, now=at + timedelta(seconds=2), skew=SKEW)

    [exited] = first
    assert [m.message_id for m in published_by(retried)] == [exited.message_id]
