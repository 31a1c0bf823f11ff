"""Step dispatch grants, decided on the enrollment: a due step is granted once to an
enrollment active at that step; an exit decided while a grant is out waits for that
send's outcome (or the lease's lapse), so that no send starts after an exit commits."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.enrollment.dispatch import (
    Granted,
    decide_grant,
    decide_renewal,
    dispatch_id_for,
    lapse_exit,
)
from services.enrollment.domain import Enrollment, Status, Unchanged
from services.enrollment.exits import (
    Exited,
    ExitPending,
    commit_exit,
)
from services.enrollment.pauses import Paused, decide_pause, decide_resume
from services.enrollment.steps import Complete, ScheduleNext, Settled, on_step_sent, on_step_unsent
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import CancelReason, FailureKind
from tests.support.builders.enrollment_dispatch import (
    LEASE,
    REPLY,
    SKEW,
    dispatch,
    exiting,
    granted,
    pending_exit,
)
from tests.support.builders.enrollment_dispatch_decisions import (
    HOUR,
    OUTCOME,
    THREE_STEPS,
    USER,
    due,
    exit_of,
    grant,
    renew,
    sent,
    unsent,
)
from tests.support.builders.enrollment_domain import (
    ACCOUNT,
    NOW,
    definition,
    enrollment,
    workflow,
)

pytestmark = pytest.mark.unit

# --- grants ----------------------------------------------------------------------------


def test_a_due_step_is_granted_to_an_active_enrollment_at_that_step() -> None:
    current = enrollment(current_step=1, steps_completed=1, next_due_at=NOW)
    dispatch_id = uuid.uuid4()

    decision = grant(current, 1, dispatch_id=dispatch_id)

    assert isinstance(decision, Granted)
    assert decision.dispatch == dispatch(1, lease_until=NOW + LEASE, dispatch_id=dispatch_id)
    assert decision.enrollment == replace(current, dispatch=decision.dispatch)
    assert (decision.step, decision.renewal) == (due(1), False)


@pytest.mark.parametrize(
    ("current", "index", "why"),
    [
        (enrollment(Status.PAUSED), 0, "enrollment is paused"),
        (exiting(granted(enrollment())), 0, "enrollment is exiting"),
        (enrollment(Status.EXITED), 0, "enrollment is exited"),
        (enrollment(Status.COMPLETED), 0, "enrollment is completed"),
        (enrollment(current_step=1), 0, "step 0 is not the current step 1"),
        (enrollment(current_step=1), 2, "step 2 is not the current step 1"),
        (granted(enrollment()), 0, "step 0 is already granted"),
    ],
)
def test_a_due_step_is_not_granted_unless_active_at_that_step_and_not_granted_yet(
    current: Enrollment, index: int, why: str
) -> None:
    assert grant(current, index) == Unchanged(why)


def test_a_dispatch_id_is_the_same_on_every_replay_and_differs_otherwise() -> None:
    due_id, enrollment_id = uuid.uuid4(), uuid.uuid4()
    first = dispatch_id_for(ACCOUNT, due_id, enrollment_id)

    assert dispatch_id_for(ACCOUNT, due_id, enrollment_id) == first
    assert dispatch_id_for("other-account", due_id, enrollment_id) != first
    assert dispatch_id_for(ACCOUNT, uuid.uuid4(), enrollment_id) != first
    assert dispatch_id_for(ACCOUNT, due_id, uuid.uuid4()) != first


# --- exits and the grant -----------------------------------------------------------------


def test_an_exit_without_a_grant_commits_at_once() -> None:
    current = enrollment(current_step=1, steps_completed=1, next_due_at=NOW)

    decision = exit_of(current)

    assert isinstance(decision, Exited)
    assert decision.enrollment == replace(
        current,
        status=Status.EXITED,
        next_due_at=None,
        ended_at=NOW,
        exit_reason=ExitReason.REPLIED,
    )
    assert (decision.sent, decision.unsent, decision.steps_completed) == (None, None, 1)


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.PAUSED])
def test_an_exit_with_a_grant_out_waits_and_revokes_it(status: Status) -> None:
    current = granted(enrollment(status, next_due_at=NOW))

    decision = exit_of(current, ExitReason.MEETING_BOOKED)

    assert isinstance(decision, ExitPending)
    assert decision.dispatch == current.dispatch
    assert decision.step_id == "s0"
    assert decision.pending == pending_exit(ExitReason.MEETING_BOOKED)
    # Nothing ends yet: the enrollment keeps its status, step and grant, and is exiting.
    assert decision.enrollment == replace(current, pending_exit=decision.pending)
    assert decision.enrollment.exiting


def test_a_second_exit_while_exiting_changes_nothing() -> None:
    current = exiting(granted(enrollment()))

    assert exit_of(current, ExitReason.UNSUBSCRIBED) == Unchanged("enrollment already exiting")


def test_pause_and_resume_change_nothing_while_exiting() -> None:
    active = exiting(granted(enrollment()))
    paused = exiting(granted(enrollment(Status.PAUSED)))

    paused_again = decide_pause(active, until=None, reason="ooo", actor=USER, pause_id=uuid.uuid4())
    resumed = decide_resume(paused, workflow(0, HOUR), actor=USER, now=NOW)

    assert paused_again == Unchanged("enrollment is exiting")
    assert resumed == Unchanged("enrollment is exiting")


def test_a_pause_keeps_the_grant_out() -> None:
    """Messaging answers it (a cancellation for the pause, or the send already under way)."""
    current = granted(enrollment())

    decision = decide_pause(current, until=None, reason="ooo", actor=USER, pause_id=uuid.uuid4())

    assert isinstance(decision, Paused)
    assert decision.enrollment.dispatch == current.dispatch


def test_committing_an_exit_needs_one_pending() -> None:
    with pytest.raises(ValueError, match="pending exit"):
        commit_exit(granted(enrollment()), now=NOW)


# --- messaging's answer to a grant -------------------------------------------------------


@pytest.mark.parametrize("current_step", [0, 2])
def test_the_granted_step_sent_while_exiting_commits_the_exit_with_the_step_counted(
    current_step: int,
) -> None:
    """Also the last step: the exit was decided before it went out, so it exits."""
    current = exiting(granted(enrollment(current_step=current_step, steps_completed=current_step)))
    later = NOW + timedelta(seconds=30)

    decision = on_step_sent(current, THREE_STEPS, sent(current_step), now=later)

    assert isinstance(decision, Exited)
    assert decision.sent == sent(current_step)
    assert decision.unsent is None
    assert decision.steps_completed == current_step + 1
    assert (decision.reason, decision.source, decision.actor, decision.triggering_event) == (
        ExitReason.REPLIED,
        ExitSource.TRIGGER,
        SYSTEM_ACTOR,
        REPLY,
    )
    ended = decision.enrollment
    assert (ended.status, ended.exit_reason, ended.ended_at) == (
        Status.EXITED,
        ExitReason.REPLIED,
        later,
    )
    assert (ended.dispatch, ended.pending_exit, ended.next_due_at) == (None, None, None)


@pytest.mark.parametrize(
    "kind",
    [
        FailureKind.HARD_BOUNCE,
        FailureKind.RETRIES_EXHAUSTED,
        CancelReason.DISPATCH_REVOKED,
        CancelReason.ENROLLMENT_PAUSED,
        CancelReason.NO_RECIPIENT,
    ],
)
def test_the_granted_step_unsent_while_exiting_commits_the_exit_with_its_pending_reason(
    kind: FailureKind | CancelReason,
) -> None:
    current = exiting(granted(enrollment(current_step=1, steps_completed=1)), ExitReason.REPLIED)

    decision = on_step_unsent(current, unsent(kind, 1), trigger=OUTCOME, now=NOW)

    assert isinstance(decision, Exited)
    assert decision.reason is ExitReason.REPLIED  # not the send's: the exit came first
    assert decision.triggering_event == REPLY
    assert decision.unsent == unsent(kind, 1)
    assert (decision.sent, decision.steps_completed) == (None, 1)
    assert (decision.enrollment.status, decision.enrollment.dispatch) == (Status.EXITED, None)
    assert decision.enrollment.pending_exit is None


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.PAUSED])
def test_a_cancel_for_a_pause_settles_the_grant_without_exiting(status: Status) -> None:
    current = granted(enrollment(status, next_due_at=NOW))

    decision = on_step_unsent(
        current, unsent(CancelReason.ENROLLMENT_PAUSED), trigger=OUTCOME, now=NOW
    )

    assert decision == Settled(replace(current, dispatch=None))


def test_a_cancel_for_a_revoke_that_exit_no_longer_waits_for_changes_nothing() -> None:
    """The exit already committed (its lease lapsed): the late answer is an echo."""
    ended = enrollment(Status.EXITED)

    decision = on_step_unsent(
        ended, unsent(CancelReason.DISPATCH_REVOKED), trigger=OUTCOME, now=NOW
    )

    assert isinstance(decision, Unchanged)


def test_the_granted_step_sent_settles_the_grant_and_schedules_the_next() -> None:
    current = granted(enrollment(next_due_at=NOW))

    decision = on_step_sent(current, THREE_STEPS, sent(0), now=NOW)

    assert isinstance(decision, ScheduleNext)
    assert decision.enrollment.dispatch is None
    assert (decision.enrollment.current_step, decision.enrollment.steps_completed) == (1, 1)


def test_the_last_granted_step_sent_completes_and_settles_the_grant() -> None:
    current = granted(enrollment(current_step=2, steps_completed=2))

    decision = on_step_sent(current, THREE_STEPS, sent(2), now=NOW)

    assert isinstance(decision, Complete)
    assert decision.enrollment.dispatch is None


def test_a_step_sent_with_no_grant_out_still_counts() -> None:
    """A send queued by messaging before grants existed carries no grant."""
    decision = on_step_sent(enrollment(next_due_at=NOW), THREE_STEPS, sent(0), now=NOW)

    assert isinstance(decision, ScheduleNext)
    assert (decision.enrollment.steps_completed, decision.enrollment.dispatch) == (1, None)


def test_an_answer_for_another_step_keeps_the_grant_and_the_pending_exit() -> None:
    current = exiting(granted(enrollment(current_step=1, steps_completed=1)))

    assert isinstance(on_step_sent(current, THREE_STEPS, sent(0), now=NOW), Unchanged)
    assert isinstance(
        on_step_unsent(current, unsent(CancelReason.DISPATCH_REVOKED, 0), trigger=OUTCOME, now=NOW),
        Unchanged,
    )


# --- renewal -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_attempt_at",
    [NOW - timedelta(seconds=10), NOW, NOW + timedelta(minutes=7)],
)
def test_a_renewal_extends_the_lease_from_the_next_attempt_or_now(
    next_attempt_at: datetime,
) -> None:
    current = granted(enrollment(), lease_until=NOW - timedelta(seconds=1))
    assert current.dispatch is not None

    decision = renew(current, current.dispatch.dispatch_id, next_attempt_at=next_attempt_at)

    assert isinstance(decision, Granted)
    renewed = replace(current.dispatch, lease_until=max(NOW, next_attempt_at) + LEASE)
    assert (decision.dispatch, decision.renewal) == (renewed, True)
    assert decision.enrollment == replace(current, dispatch=renewed)


@pytest.mark.parametrize(
    "current",
    [
        granted(enrollment()),
        enrollment(),
        enrollment(Status.EXITED),
        enrollment(Status.COMPLETED),
    ],
)
def test_a_renewal_of_another_grant_or_of_an_ended_enrollment_changes_nothing(
    current: Enrollment,
) -> None:
    assert isinstance(renew(current, uuid.uuid4(), next_attempt_at=NOW), Unchanged)


def test_a_deferred_send_commits_a_pending_exit() -> None:
    """Messaging said no call started, and it starts none under the lapsed lease."""
    current = exiting(granted(enrollment(current_step=1, steps_completed=1)))
    assert current.dispatch is not None

    decision = renew(current, current.dispatch.dispatch_id, next_attempt_at=NOW)

    assert isinstance(decision, Exited)
    assert (decision.reason, decision.sent, decision.unsent, decision.steps_completed) == (
        ExitReason.REPLIED,
        None,
        None,
        1,
    )
    assert (decision.enrollment.dispatch, decision.enrollment.pending_exit) == (None, None)


def test_a_paused_enrollment_s_lapsed_grant_is_let_go_not_renewed() -> None:
    """A renewal is a grant, and a paused enrollment is granted nothing (``decide_grant``).

    Renewing it would let a renewal read by messaging after its pause cancellation re-arm
    the send under a grant enrollment no longer holds: after the resume an exit would
    commit at once, and messaging start the re-armed send after it (see
    ``PAUSED_DEFERRAL`` below). Letting it go is safe: messaging starts nothing under the
    lapsed lease, and the resume grants the step again."""
    current = granted(enrollment(Status.PAUSED), lease_until=NOW - timedelta(seconds=1))
    assert current.dispatch is not None

    decision = renew(current, current.dispatch.dispatch_id, next_attempt_at=NOW)

    assert decision == Settled(replace(current, dispatch=None))


def test_a_deferral_of_a_lease_renewed_since_changes_nothing() -> None:
    current = granted(enrollment(), lease_until=NOW + timedelta(seconds=30))
    assert current.dispatch is not None

    decision = decide_renewal(
        current,
        due(0),
        dispatch_id=current.dispatch.dispatch_id,
        lapsed=NOW - timedelta(seconds=90),
        next_attempt_at=NOW,
        lease=LEASE,
        now=NOW,
    )

    assert decision == Unchanged("the deferral is of a lease that was renewed since")


# --- a lease that lapses unanswered ------------------------------------------------------


@pytest.mark.parametrize(
    ("after_lease", "commits"),
    [
        (timedelta(0), False),
        (SKEW - timedelta(microseconds=1), False),
        (SKEW, True),
        (timedelta(hours=1), True),
    ],
)
def test_a_pending_exit_commits_only_once_the_lease_and_the_skew_are_over(
    after_lease: timedelta, commits: bool
) -> None:
    current = exiting(granted(enrollment()))
    assert current.dispatch is not None
    now = current.dispatch.lease_until + after_lease

    decision = lapse_exit(current, skew=SKEW, now=now)

    if commits:
        assert isinstance(decision, Exited)
        assert (decision.reason, decision.enrollment.ended_at) == (ExitReason.REPLIED, now)
        assert (decision.sent, decision.unsent) == (None, None)
    else:
        assert decision == Unchanged("the grant's lease has not lapsed")


@pytest.mark.parametrize(
    "current", [granted(enrollment()), enrollment(Status.EXITED), enrollment()]
)
def test_a_lapsed_lease_without_a_pending_exit_commits_nothing(current: Enrollment) -> None:
    later = NOW + timedelta(days=1)
    assert lapse_exit(current, skew=SKEW, now=later) == Unchanged("no exit is pending")


def test_a_timer_of_another_version_s_step_at_the_current_index_is_not_granted() -> None:
    """After ``workflow.migrate``, a timer armed for the old version's step may fire at
    the enrollment's new index: its step id is not that version's step there."""
    current = enrollment(current_step=1, steps_completed=1, next_due_at=NOW)
    version = definition(0, 24)
    renamed = version.model_copy(
        update={"steps": (version.steps[0], version.steps[1].model_copy(update={"step_id": "n1"}))}
    )

    stale = decide_grant(
        current, due(1), dispatch_id=uuid.uuid4(), lease=LEASE, now=NOW, definition=renamed
    )
    fresh = decide_grant(
        current, due(1), dispatch_id=uuid.uuid4(), lease=LEASE, now=NOW, definition=version
    )

    assert stale == Unchanged("step 1 (s1) is not a step of the enrollment's version")
    assert isinstance(fresh, Granted)
