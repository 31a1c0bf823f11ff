"""Enrollment's pure decisions: admission, versions, step progress, exits, pause and resume."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.enrollment.domain import (
    Admitted,
    Complete,
    Enrollment,
    Exited,
    Paused,
    Refused,
    Resumed,
    ScheduledStep,
    ScheduleNext,
    SentStep,
    Status,
    Unchanged,
    VersionApplied,
    WorkflowVersion,
    decide_apply,
    decide_enrollment,
    decide_exit,
    decide_pause,
    decide_resume,
    definition_hash,
    enrollment_id_for,
    event_id,
    next_version,
    on_step_sent,
)
from services.enrollment.errors import MissingWorkflowVersionError
from shared.contracts import SYSTEM_ACTOR, Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource, TriggeringEvent
from shared.contracts.workflow import (
    ReenrollmentPolicy,
)
from tests.support.builders.enrollment_domain import (
    ACCOUNT,
    CONTACT,
    NOW,
    definition,
    enrollment,
    workflow,
)

pytestmark = pytest.mark.unit

HOUR = 3600
DAY = 24 * HOUR
USER = Actor(kind=ActorKind.USER, id="u-1")
CONTACT_DETAILS = ContactDetails(email="c-1@acme.com")


def enroll(
    wf: WorkflowVersion | None,
    *,
    previous: list[Enrollment] | None = None,
    record: RecordRef = CONTACT,
    enrollment_id: uuid.UUID | None = None,
) -> Admitted | Refused:
    return decide_enrollment(
        workflow=wf,
        workflow_id="onboarding",
        record=record,
        account_id=ACCOUNT,
        previous=previous or [],
        now=NOW,
        enrollment_id=enrollment_id or uuid.uuid4(),
        contact=CONTACT_DETAILS,
        actor=USER,
    )


def codes(decision: Admitted | Refused) -> list[str]:
    assert isinstance(decision, Refused)
    return [r.code for r in decision.rejections]


# --- admission ------------------------------------------------------------------------


def test_an_unknown_workflow_refuses() -> None:
    decision = enroll(None)
    assert codes(decision) == ["unknown_workflow"]
    assert isinstance(decision, Refused)
    assert "'onboarding'" in decision.rejections[0].detail


def test_a_record_of_another_type_is_refused() -> None:
    deal = RecordRef(type=RecordType.DEAL, id="d-1")
    decision = enroll(workflow(), record=deal)
    assert codes(decision) == ["record_type_mismatch"]
    assert isinstance(decision, Refused)
    assert decision.rejections[0].detail == "a contact workflow cannot enroll a deal"


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.PAUSED])
def test_a_record_already_in_the_workflow_is_refused(status: Status) -> None:
    decision = enroll(
        workflow(reenrollment=ReenrollmentPolicy.ANYTIME), previous=[enrollment(status)]
    )
    assert codes(decision) == ["already_enrolled"]


def test_every_reason_is_given_at_once() -> None:
    deal = RecordRef(type=RecordType.DEAL, id="d-1")
    decision = enroll(workflow(), record=deal, previous=[enrollment(Status.ACTIVE)])
    assert codes(decision) == ["record_type_mismatch", "already_enrolled"]


@pytest.mark.parametrize("ended", [Status.EXITED, Status.COMPLETED])
def test_a_workflow_that_never_re_enrolls_refuses_a_second_time(ended: Status) -> None:
    decision = enroll(workflow(reenrollment=ReenrollmentPolicy.NEVER), previous=[enrollment(ended)])
    assert codes(decision) == ["reenrollment_not_allowed"]


@pytest.mark.parametrize("policy", [ReenrollmentPolicy.ANYTIME, ReenrollmentPolicy.WHEN_NOT_ACTIVE])
def test_a_workflow_that_re_enrolls_admits_after_an_exit(policy: ReenrollmentPolicy) -> None:
    decision = enroll(workflow(reenrollment=policy), previous=[enrollment(Status.EXITED)])
    assert isinstance(decision, Admitted)


def test_re_enrollment_waits_the_minimum_days_after_the_latest_enrollment() -> None:
    wf = workflow(reenrollment=ReenrollmentPolicy.ANYTIME, min_days_between_enrollments=7)
    old = enrollment(Status.COMPLETED, enrolled_at=NOW - timedelta(days=40))
    recent = enrollment(Status.EXITED, enrolled_at=NOW - timedelta(days=6, hours=23))

    too_soon = enroll(wf, previous=[old, recent])

    assert codes(too_soon) == ["reenrollment_too_soon"]
    assert isinstance(too_soon, Refused)
    assert "7 days" in too_soon.rejections[0].detail


def test_re_enrollment_is_allowed_once_the_minimum_days_passed() -> None:
    wf = workflow(reenrollment=ReenrollmentPolicy.ANYTIME, min_days_between_enrollments=7)
    previous = [enrollment(Status.EXITED, enrolled_at=NOW - timedelta(days=7))]
    assert isinstance(enroll(wf, previous=previous), Admitted)


def test_an_admitted_record_starts_at_the_first_step_of_the_current_version() -> None:
    enrollment_id = uuid.uuid4()
    decision = enroll(workflow(0, DAY, version=3), enrollment_id=enrollment_id)

    assert isinstance(decision, Admitted)
    admitted = decision.enrollment
    assert admitted.enrollment_id == enrollment_id
    assert (admitted.account_id, admitted.workflow_id, admitted.record) == (
        ACCOUNT,
        "onboarding",
        CONTACT,
    )
    assert admitted.workflow_version == 3
    assert (admitted.status, admitted.current_step, admitted.steps_completed) == (
        Status.ACTIVE,
        0,
        0,
    )
    assert admitted.enrolled_at == NOW
    assert decision.first_step.step_id == "s0"


@pytest.mark.parametrize("delay", [0, 90, 2 * DAY])
def test_the_first_step_is_due_now_plus_its_delay(delay: int) -> None:
    decision = enroll(workflow(delay, HOUR))
    assert isinstance(decision, Admitted)
    assert decision.enrollment.next_due_at == NOW + timedelta(seconds=delay)


def test_an_admission_carries_the_contact_actor_and_first_step_due() -> None:
    decision = enroll(workflow(90, HOUR))

    assert isinstance(decision, Admitted)
    assert (decision.contact, decision.actor) == (CONTACT_DETAILS, USER)
    assert decision.scheduled == ScheduledStep(0, decision.first_step, NOW + timedelta(seconds=90))


def test_a_refusal_carries_what_was_refused_and_by_whom() -> None:
    decision = enroll(None)

    assert isinstance(decision, Refused)
    assert (decision.account_id, decision.workflow_id, decision.record, decision.actor) == (
        ACCOUNT,
        "onboarding",
        CONTACT,
        USER,
    )


# --- versions -------------------------------------------------------------------------


def test_a_new_workflow_becomes_version_one() -> None:
    assert next_version(None, None, definition_hash(definition())) == 1


def test_an_unchanged_definition_makes_no_version() -> None:
    same = definition_hash(definition(0, HOUR))
    assert same == definition_hash(definition(0, HOUR))
    assert next_version(4, same, same) is None


def test_a_changed_definition_makes_the_next_version() -> None:
    before = definition_hash(definition(0, HOUR))
    after = definition_hash(definition(0, 2 * HOUR))
    assert before != after
    assert next_version(4, before, after) == 5


def test_applying_a_definition_decides_its_version_with_every_fact() -> None:
    wf = definition(0, HOUR)
    same = definition_hash(wf)

    assert decide_apply(None, account_id=ACCOUNT, definition=wf, actor=USER) == VersionApplied(
        ACCOUNT, wf, 1, same, USER
    )
    assert decide_apply((4, same), account_id=ACCOUNT, definition=wf, actor=USER) == Unchanged(
        "the definition is the current version"
    )
    changed = decide_apply((4, "other"), account_id=ACCOUNT, definition=wf, actor=USER)
    assert isinstance(changed, VersionApplied)
    assert changed.version == 5


# --- step progress --------------------------------------------------------------------


def sent(step_index: int, sent_at: datetime) -> SentStep:
    return SentStep(step_index, f"s{step_index}", f"<m-{step_index}@offramp.test>", sent_at)


def test_a_sent_step_schedules_the_next_after_its_delay_from_the_send() -> None:
    sent_at = NOW + timedelta(minutes=3)
    current = enrollment(next_due_at=NOW)

    decision = on_step_sent(current, definition(0, HOUR, DAY), sent(0, sent_at))

    assert isinstance(decision, ScheduleNext)
    assert decision.step.step_id == "s1"
    assert decision.enrollment == replace(
        current, current_step=1, steps_completed=1, next_due_at=sent_at + timedelta(hours=1)
    )


def test_a_sent_step_carries_what_was_sent() -> None:
    decision = on_step_sent(enrollment(next_due_at=NOW), definition(0, HOUR), sent(0, NOW))

    assert isinstance(decision, ScheduleNext)
    assert decision.sent == sent(0, NOW)
    assert decision.scheduled == ScheduledStep(1, decision.step, NOW + timedelta(hours=1))


def test_the_last_sent_step_completes_the_enrollment() -> None:
    current = enrollment(current_step=1, steps_completed=1, next_due_at=NOW)

    decision = on_step_sent(current, definition(0, HOUR), sent(1, NOW))

    assert isinstance(decision, Complete)
    assert decision.enrollment == replace(
        current, status=Status.COMPLETED, steps_completed=2, next_due_at=None, ended_at=NOW
    )


@pytest.mark.parametrize("step_index", [0, 2])
def test_a_send_of_another_step_than_the_current_changes_nothing(step_index: int) -> None:
    current = enrollment(current_step=1, steps_completed=1)
    decision = on_step_sent(current, definition(0, HOUR, DAY), sent(step_index, NOW))
    assert isinstance(decision, Unchanged)
    assert f"step {step_index} is not the current step 1" in decision.why


@pytest.mark.parametrize("ended", [Status.EXITED, Status.COMPLETED])
def test_a_send_for_an_ended_enrollment_changes_nothing(ended: Status) -> None:
    decision = on_step_sent(enrollment(ended), definition(0, HOUR), sent(0, NOW))
    assert decision == Unchanged(f"enrollment is {ended.value}")


def test_a_paused_enrollment_still_records_a_step_already_on_its_way() -> None:
    current = enrollment(Status.PAUSED, next_due_at=NOW)

    decision = on_step_sent(current, definition(0, HOUR), sent(0, NOW))

    assert isinstance(decision, ScheduleNext)
    assert decision.enrollment.status is Status.PAUSED
    assert (decision.enrollment.current_step, decision.enrollment.steps_completed) == (1, 1)
    assert decision.enrollment.next_due_at == NOW + timedelta(hours=1)


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
) -> Exited | Unchanged:
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


def pause(current: Enrollment) -> Paused | Unchanged:
    return decide_pause(current, until=UNTIL, reason="ooo", actor=USER)


def resume(current: Enrollment) -> Resumed | Unchanged:
    return decide_resume(current, workflow(0, HOUR, DAY), actor=USER, now=NOW)


def test_pausing_keeps_the_step_and_its_due_time() -> None:
    current = enrollment(current_step=1, steps_completed=1, next_due_at=NOW + timedelta(hours=2))
    assert pause(current) == Paused(replace(current, status=Status.PAUSED), UNTIL, "ooo", USER)


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
