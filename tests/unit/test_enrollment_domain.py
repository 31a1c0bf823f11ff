"""Enrollment's pure decisions: admission, versions and step progress (exits, pause and
resume are in test_enrollment_lifecycle.py)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.enrollment.domain import (
    LATER_SETTINGS,
    Admitted,
    Enrollment,
    Refused,
    ScheduledStep,
    Status,
    Unchanged,
    VersionApplied,
    WorkflowVersion,
    decide_apply,
    decide_enrollment,
    definition_hash,
    next_version,
)
from services.enrollment.exits import SentStep
from services.enrollment.steps import Complete, ScheduleNext, on_step_sent
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ContactDetails
from shared.contracts.workflow import (
    ReenrollmentPolicy,
    WorkflowDefinition,
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
        workflow(reenrollment=ReenrollmentPolicy.WHEN_NOT_ACTIVE), previous=[enrollment(status)]
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


def test_settings_added_since_keep_an_unchanged_definition_s_hash_while_at_their_default() -> None:
    plain = definition(0, HOUR)
    as_before = plain.model_dump_json(exclude={"settings": set(LATER_SETTINGS)})

    assert definition_hash(plain) == hashlib.sha256(as_before.encode()).hexdigest()
    assert set(type(plain.settings).model_fields) >= LATER_SETTINGS


def test_a_later_setting_set_away_from_its_default_changes_the_hash() -> None:
    plain = definition(0, HOUR)
    deal = replace_settings(plain, exit_company_on_deal_opened=True)
    assert definition_hash(deal) != definition_hash(plain)


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

    decision = on_step_sent(current, definition(0, HOUR, DAY), sent(0, sent_at), now=NOW)

    assert isinstance(decision, ScheduleNext)
    assert decision.step.step_id == "s1"
    assert decision.enrollment == replace(
        current, current_step=1, steps_completed=1, next_due_at=sent_at + timedelta(hours=1)
    )


def test_a_sent_step_carries_what_was_sent() -> None:
    decision = on_step_sent(enrollment(next_due_at=NOW), definition(0, HOUR), sent(0, NOW), now=NOW)

    assert isinstance(decision, ScheduleNext)
    assert decision.sent == sent(0, NOW)
    assert decision.scheduled == ScheduledStep(1, decision.step, NOW + timedelta(hours=1))


def test_the_last_sent_step_completes_the_enrollment() -> None:
    current = enrollment(current_step=1, steps_completed=1, next_due_at=NOW)

    decision = on_step_sent(current, definition(0, HOUR), sent(1, NOW), now=NOW)

    assert isinstance(decision, Complete)
    assert decision.enrollment == replace(
        current, status=Status.COMPLETED, steps_completed=2, next_due_at=None, ended_at=NOW
    )


@pytest.mark.parametrize("step_index", [0, 2])
def test_a_send_of_another_step_than_the_current_changes_nothing(step_index: int) -> None:
    current = enrollment(current_step=1, steps_completed=1)
    decision = on_step_sent(current, definition(0, HOUR, DAY), sent(step_index, NOW), now=NOW)
    assert isinstance(decision, Unchanged)
    assert f"step {step_index} is not the current step 1" in decision.why


@pytest.mark.parametrize("ended", [Status.EXITED, Status.COMPLETED])
def test_a_send_for_an_ended_enrollment_changes_nothing(ended: Status) -> None:
    decision = on_step_sent(enrollment(ended), definition(0, HOUR), sent(0, NOW), now=NOW)
    assert decision == Unchanged(f"enrollment is {ended.value}")


def test_a_paused_enrollment_still_records_a_step_already_on_its_way() -> None:
    current = enrollment(Status.PAUSED, next_due_at=NOW)

    decision = on_step_sent(current, definition(0, HOUR), sent(0, NOW), now=NOW)

    assert isinstance(decision, ScheduleNext)
    assert decision.enrollment.status is Status.PAUSED
    assert (decision.enrollment.current_step, decision.enrollment.steps_completed) == (1, 1)
    assert decision.enrollment.next_due_at == NOW + timedelta(hours=1)


def replace_settings(wf: WorkflowDefinition, **changes: object) -> WorkflowDefinition:
    return wf.model_copy(update={"settings": wf.settings.model_copy(update=changes)})
