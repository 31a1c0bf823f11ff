"""Enrollment's pure decisions: exits, pause and resume, derived ids (admission, versions
and step progress are in test_enrollment_domain.py)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.enrollment.domain import (
    Enrollment,
    ScheduledStep,
    Status,
    Unchanged,
    enrollment_id_for,
    event_id,
    pause_id_for,
)
from services.enrollment.errors import MissingWorkflowVersionError
from services.enrollment.exits import Exited, ExitPending, decide_exit
from services.enrollment.pauses import Paused, Resumed, decide_pause, decide_resume
from shared.contracts import SYSTEM_ACTOR, Actor, ActorKind
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource, TriggeringEvent
from tests.support.builders.enrollment_domain import (
    NOW,
    enrollment,
    workflow,
)

pytestmark = pytest.mark.unit

HOUR = 3600
DAY = 24 * HOUR
USER = Actor(kind=ActorKind.USER, id="u-1")
CONTACT_DETAILS = ContactDetails(email="c-1@acme.com")


# --- exits ----------------------------------------------------------------------------


TRIGGER = TriggeringEvent(
    message_id=uuid.UUID("0b7e5a1c-0000-4000-8000-0000000000e1"),
    type="email.replied",
    topic="offramp.inbound.email.v1",
    occurred_at=NOW,
)


def exit_of(
    current: Enrollment,
    *,
    source: ExitSource = ExitSource.MANUAL,
    agents_may_stop: bool = True,
    by_user: bool = True,
) -> Exited | ExitPending | Unchanged:
    return decide_exit(
        current,
        reason=ExitReason.REPLIED,
        source=source,
        actor=USER if by_user else SYSTEM_ACTOR,
        triggering_event=TRIGGER,
        agents_may_stop=agents_may_stop,
        now=NOW,
    )


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.PAUSED])
def test_a_live_enrollment_exits_with_its_reason(status: Status) -> None:
    current = enrollment(status, current_step=2, steps_completed=2, next_due_at=NOW)

    decision = exit_of(current, source=ExitSource.TRIGGER, by_user=False)

    assert isinstance(decision, Exited)
    assert decision.enrollment == replace(
        current,
        status=Status.EXITED,
        next_due_at=None,
        ended_at=NOW,
        exit_reason=ExitReason.REPLIED,
    )


def test_an_exit_carries_every_fact_its_event_and_history_need() -> None:
    current = enrollment(current_step=2, steps_completed=2, next_due_at=NOW)

    decision = exit_of(current, source=ExitSource.TRIGGER, by_user=False)

    assert isinstance(decision, Exited)
    assert (decision.reason, decision.source, decision.actor, decision.triggering_event) == (
        ExitReason.REPLIED,
        ExitSource.TRIGGER,
        SYSTEM_ACTOR,
        TRIGGER,
    )
    assert decision.steps_completed == 2


@pytest.mark.parametrize("ended", [Status.EXITED, Status.COMPLETED])
def test_an_ended_enrollment_stays_as_it_was(ended: Status) -> None:
    assert exit_of(enrollment(ended)) == Unchanged(f"enrollment already {ended.value}")


@pytest.mark.parametrize("source", [ExitSource.MANUAL, ExitSource.BULK])
def test_a_workflow_may_forbid_users_to_stop_it(source: ExitSource) -> None:
    decision = exit_of(enrollment(), source=source, agents_may_stop=False, by_user=True)
    assert decision == Unchanged("the workflow does not let agents stop it")


@pytest.mark.parametrize(
    ("source", "by_user"),
    [
        (ExitSource.TRIGGER, False),
        (ExitSource.EXCLUSION, False),
        (ExitSource.WORKFLOW, True),
        (ExitSource.MANUAL, False),  # an API client or Offramp itself, not an agent
    ],
)
def test_only_agents_are_held_back_by_the_setting(source: ExitSource, by_user: bool) -> None:
    decision = exit_of(enrollment(), source=source, agents_may_stop=False, by_user=by_user)
    assert isinstance(decision, Exited)


def test_agents_may_stop_a_workflow_that_allows_it() -> None:
    assert isinstance(exit_of(enrollment(), agents_may_stop=True, by_user=True), Exited)


# --- pause and resume -----------------------------------------------------------------


UNTIL = NOW + timedelta(days=14)
PAUSE_ID = uuid.UUID("5a0e0000-0000-4000-8000-00000000000a")


def pause(current: Enrollment) -> Paused | Unchanged:
    return decide_pause(current, until=UNTIL, reason="ooo", actor=USER, pause_id=PAUSE_ID)


def resume(current: Enrollment) -> Resumed | Unchanged:
    return decide_resume(current, workflow(0, HOUR, DAY), actor=USER, now=NOW)


def test_pausing_keeps_the_step_and_its_due_time() -> None:
    current = enrollment(current_step=1, steps_completed=1, next_due_at=NOW + timedelta(hours=2))
    held = replace(current, status=Status.PAUSED, paused_until=UNTIL, pause_id=PAUSE_ID)
    assert pause(current) == Paused(held, UNTIL, "ooo", USER, PAUSE_ID)


def test_a_timed_resume_ends_the_pause_it_names_and_forgets_it() -> None:
    held = enrollment(Status.PAUSED, next_due_at=NOW + timedelta(hours=2))
    held = replace(held, paused_until=NOW, pause_id=PAUSE_ID)

    decision = decide_resume(
        held, workflow(0, HOUR, DAY), actor=SYSTEM_ACTOR, now=NOW, pause_id=PAUSE_ID
    )

    assert isinstance(decision, Resumed)
    assert decision.enrollment == replace(
        held, status=Status.ACTIVE, paused_until=None, pause_id=None
    )
    assert decision.actor == SYSTEM_ACTOR


def test_a_timed_resume_of_an_earlier_pause_changes_nothing() -> None:
    """The enrollment was resumed by hand and paused again: the old timer is stale."""
    held = replace(enrollment(Status.PAUSED), pause_id=uuid.uuid4())

    decision = decide_resume(
        held, workflow(0, HOUR, DAY), actor=SYSTEM_ACTOR, now=NOW, pause_id=PAUSE_ID
    )

    assert decision == Unchanged("the resume is for an earlier pause")
    # A resume that names no pause (a user's) ends any pause.
    assert isinstance(resume(held), Resumed)


def test_a_pause_id_is_the_same_on_every_replay_and_differs_across_accounts() -> None:
    subject = uuid.UUID("6f1c2b3a-0000-4000-8000-000000000001")
    ours = pause_id_for("acme-account", PAUSE_ID, subject)
    assert (
        ours
        == pause_id_for("acme-account", PAUSE_ID, subject)
        == event_id("paused", "acme-account", PAUSE_ID, subject)
    )
    assert ours != pause_id_for("other-account", PAUSE_ID, subject)


@pytest.mark.parametrize("status", [Status.PAUSED, Status.EXITED, Status.COMPLETED])
def test_only_an_active_enrollment_pauses(status: Status) -> None:
    assert pause(enrollment(status)) == Unchanged(f"enrollment is {status.value}")


def test_resuming_before_the_due_time_keeps_it() -> None:
    due = NOW + timedelta(hours=2)
    current = enrollment(Status.PAUSED, current_step=1, next_due_at=due)

    decision = resume(current)

    assert isinstance(decision, Resumed)
    assert decision.enrollment == replace(current, status=Status.ACTIVE)
    assert decision.actor == USER
    assert decision.scheduled == ScheduledStep(1, workflow(0, HOUR, DAY).definition.steps[1], due)


@pytest.mark.parametrize("due", [NOW - timedelta(days=3), None])
def test_resuming_after_the_due_time_runs_the_step_at_once(due: datetime | None) -> None:
    resumed = resume(enrollment(Status.PAUSED, next_due_at=due))
    assert isinstance(resumed, Resumed)
    assert (resumed.enrollment.status, resumed.enrollment.next_due_at) == (Status.ACTIVE, NOW)
    assert resumed.scheduled.due_at == NOW


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.EXITED, Status.COMPLETED])
def test_only_a_paused_enrollment_resumes(status: Status) -> None:
    assert resume(enrollment(status)) == Unchanged(f"enrollment is {status.value}")


def test_resuming_without_the_enrollment_s_workflow_version_is_an_error() -> None:
    with pytest.raises(MissingWorkflowVersionError):
        decide_resume(enrollment(Status.PAUSED), None, actor=USER, now=NOW)
    # Nothing to resume needs no version.
    assert decide_resume(enrollment(), None, actor=USER, now=NOW) == Unchanged(
        "enrollment is active"
    )


# --- derived ids ---------------------------------------------------------------------

CAUSE = uuid.UUID("3d2c1b0a-0000-4000-8000-00000000c0de")


def test_an_enrollment_id_is_the_same_on_every_replay_and_differs_across_accounts() -> None:
    ours = enrollment_id_for("acme-account", CAUSE, "onboarding")
    assert ours == enrollment_id_for("acme-account", CAUSE, "onboarding")
    # The same enroll message id and workflow id in another account (upstream ids are only
    # unique within an account) is another enrollment.
    assert ours != enrollment_id_for("other-account", CAUSE, "onboarding")
    assert ours != enrollment_id_for("acme-account", CAUSE, "nurture")


@pytest.mark.parametrize("kind", ["enrolled", "exited", "step_scheduled", "workflow_applied"])
def test_event_ids_are_the_same_on_every_replay_and_differ_across_accounts(kind: str) -> None:
    subject = uuid.UUID("6f1c2b3a-0000-4000-8000-000000000001")
    assert event_id(kind, "acme-account", CAUSE, subject) == event_id(
        kind, "acme-account", CAUSE, subject
    )
    assert event_id(kind, "acme-account", CAUSE, subject) != event_id(
        kind, "other-account", CAUSE, subject
    )
