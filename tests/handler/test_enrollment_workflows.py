"""Enrollment handlers on the fake store: workflow versions, and records entering them.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.enrollment.domain import Status
from shared.contracts import TOPIC_OF_TYPE, Message, decode
from shared.contracts.commands import (
    ApplyWorkflow,
    BulkEnroll,
    BulkExit,
    BulkRestore,
    ContactDetails,
    DeleteWorkflow,
    Enroll,
    Exit,
    Pause,
    PauseWorkflow,
    RemoveOwner,
    ReorderWorkflows,
    Restore,
    Resume,
    ResumeWorkflow,
    SetOwnerRemoval,
)
from shared.contracts.enrollment_rules import SetExclusivity
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentRejected,
    EnrollmentResumed,
    EnrollmentStepCompleted,
    EnrollmentStepScheduled,
    MessageCancelled,
    MessageDeferred,
    MessageFailed,
    MessageSent,
    StepDue,
    WorkflowApplied,
)
from shared.contracts.exclusions import EXCLUSION_COMMANDS
from shared.contracts.inbound import CRM_EVENTS, UserChanged
from shared.contracts.migration import MigrateWorkflow
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_commands import (
    ALICE,
    BOB,
    apply_cmd,
    definition,
    enroll_cmd,
    exit_cmd,
    pause_cmd,
    resume_cmd,
    sent_evt,
)
from tests.support.builders.enrollment_events import ACCOUNT, T0
from tests.support.builders.enrollment_setup import (
    SCREENING_CALLS,
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

HOUR = timedelta(hours=1)


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


def test_enrollment_handles_its_commands_and_sends(h: EnrollmentHarness) -> None:
    commands = {ApplyWorkflow.TYPE, Enroll.TYPE, Exit.TYPE, Pause.TYPE, Resume.TYPE}
    commands |= {
        PauseWorkflow.TYPE,
        ResumeWorkflow.TYPE,
        DeleteWorkflow.TYPE,
        ReorderWorkflows.TYPE,
        BulkExit.TYPE,
        Restore.TYPE,
        BulkRestore.TYPE,
        SetOwnerRemoval.TYPE,
        RemoveOwner.TYPE,
        SetExclusivity.TYPE,
        BulkEnroll.TYPE,
        UserChanged.TYPE,  # the CRM's, for owner removal
        MigrateWorkflow.TYPE,
    }
    outcomes = {MessageSent.TYPE, MessageFailed.TYPE, MessageCancelled.TYPE}
    dispatch = {StepDue.TYPE, MessageDeferred.TYPE}
    exclusions = {m.TYPE for m in EXCLUSION_COMMANDS} | {
        m.TYPE for m in CRM_EVENTS if m.TYPE.startswith(("record.", "association.", "deal.stage"))
    }
    exclusions -= {"record.owner_assigned"}
    suppressions = {"email.bounced", "email.unsubscribed"}
    assert set(h.handlers) == commands | outcomes | dispatch | exclusions | suppressions
    # One handler for both ends of a send that never happens, so a mix of them is one run.
    assert h.handlers[MessageFailed.TYPE] is h.handlers[MessageCancelled.TYPE]


async def test_every_message_goes_to_its_topic_keyed_by_its_record_with_its_id(
    h: EnrollmentHarness,
) -> None:
    """Every kind of message enrollment publishes, as the outbox will hand it to Kafka."""
    enrolled = await enrolled_in(h, definition(0, 24))
    messages: list[Message] = [
        apply_cmd(definition(0, 48)),
        enroll_cmd(workflow_id="nowhere"),  # parked: publishes nothing yet
        enroll_cmd(),  # already enrolled
        sent_evt(enrolled, 0, T0),
        pause_cmd(),
        resume_cmd(),
        sent_evt(enrolled, 1, T0),
        apply_cmd(definition(0, workflow_id="trial")),
        enroll_cmd(workflow_id="trial"),
        exit_cmd(workflow_id="trial"),
    ]
    uow = UnitOfWork(None, h.store)
    for message in messages:
        await h.handlers[message.type](uow, [message], T0)

    published = set()
    for outgoing in uow.outgoing:
        decoded = decode(outgoing.value, topic=outgoing.topic)
        assert isinstance(decoded, Message)
        assert outgoing.topic == TOPIC_OF_TYPE[decoded.type]
        assert outgoing.key == decoded.partition_key()
        assert outgoing.headers["message-id"] == str(decoded.message_id)
        published.add(decoded.type)
    assert published == {
        WorkflowApplied.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
        EnrollmentRejected.TYPE,
        EnrollmentStepCompleted.TYPE,
        EnrollmentPaused.TYPE,
        EnrollmentResumed.TYPE,
        EnrollmentCompleted.TYPE,
        EnrollmentExited.TYPE,
    }


# --- workflows ------------------------------------------------------------------------


async def test_applying_a_new_workflow_publishes_version_one(h: EnrollmentHarness) -> None:
    command = apply_cmd(definition())

    (applied,) = (await h.when(command)).published

    assert isinstance(applied, WorkflowApplied)
    assert applied.payload.version == 1
    assert applied.payload.definition == definition()
    assert applied.partition_key() == f"{ACCOUNT}/workflow/onboarding"
    assert applied.causation_id == command.message_id
    assert h.store.heads == {(ACCOUNT, "onboarding"): 1}


async def test_re_applying_the_same_definition_changes_nothing_and_says_so(
    h: EnrollmentHarness,
) -> None:
    await h.when(apply_cmd(definition()))

    outcome = await h.when(apply_cmd(definition()))

    assert (changes(outcome), answers(outcome)) == ([], ["unchanged"])
    assert list(h.store.versions) == [(ACCOUNT, "onboarding", 1)]


async def test_a_changed_definition_becomes_the_next_version(h: EnrollmentHarness) -> None:
    await h.when(apply_cmd(definition(0, 24)))

    (applied,) = (await h.when(apply_cmd(definition(0, 48)))).published

    assert isinstance(applied, WorkflowApplied)
    assert applied.payload.version == 2
    current = (await h.store.current_workflows([(ACCOUNT, "onboarding")]))[(ACCOUNT, "onboarding")]
    assert current.version == 2
    assert current.definition.steps[1].delay_seconds == 48 * 3600


async def test_a_run_of_applies_makes_each_change_a_version_in_four_statements(
    h: EnrollmentHarness,
) -> None:
    outcome = await h.when(
        apply_cmd(definition(0, 24)),
        apply_cmd(definition(0, 48)),
        apply_cmd(definition(0, 48)),  # no change: no version
        apply_cmd(definition(0, workflow_id="trial")),
    )

    applied = outcome.of_type(WorkflowApplied)
    assert [(a.payload.definition.workflow_id, a.payload.version) for a in applied] == [
        ("onboarding", 1),
        ("onboarding", 2),
        ("trial", 1),
    ]
    assert h.store.heads == {(ACCOUNT, "onboarding"): 2, (ACCOUNT, "trial"): 1}
    # ...and takes the enrolls parked for them, under their lock (none here).
    assert h.store.calls == [
        "workflow_heads",
        "add_workflow_versions",
        "lock_workflows",
        "take_parked",
    ]


# --- enrollment -----------------------------------------------------------------------


async def test_enrolling_publishes_enrolled_and_schedules_the_first_step(
    h: EnrollmentHarness,
) -> None:
    await h.when(apply_cmd(definition(2, 24)))
    command = enroll_cmd()

    outcome = await h.when(command)

    published = outcome.published
    assert [m.type for m in published] == [EnrollmentEnrolled.TYPE, EnrollmentStepScheduled.TYPE]
    enrolled, scheduled = only(outcome, EnrollmentEnrolled), only(outcome, EnrollmentStepScheduled)
    assert enrolled.payload.record == ALICE
    assert enrolled.payload.workflow_version == 1
    assert enrolled.payload.contact == ContactDetails(email="c-1@acme.com")
    assert enrolled.causation_id == scheduled.causation_id == command.message_id
    assert scheduled.payload.enrollment_id == enrolled.payload.enrollment_id
    assert (scheduled.payload.step_index, scheduled.payload.step_id) == (0, "s0")
    assert scheduled.payload.due_at == T0 + 2 * HOUR
    saved = h.store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.current_step, saved.next_due_at) == (
        Status.ACTIVE,
        0,
        T0 + 2 * HOUR,
    )
    assert (ACCOUNT, saved.enrollment_id, EnrollmentEnrolled.TYPE) in h.store.history


async def test_enrolling_into_an_unknown_workflow_is_rejected_once_the_wait_is_over(
    h: EnrollmentHarness,
) -> None:
    assert (await h.when(enroll_cmd(workflow_id="nowhere"))).published == []  # parked

    (rejected,) = (await expire(h, after=TOO_LONG)).published

    assert isinstance(rejected, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["unknown_workflow"]
    assert (rejected.payload.workflow_id, rejected.payload.record) == ("nowhere", ALICE)
    assert h.store.enrollments == {}
    assert h.store.history == [(ACCOUNT, None, EnrollmentRejected.TYPE)]


async def test_enrolling_a_record_twice_is_rejected(h: EnrollmentHarness) -> None:
    await enrolled_in(h)

    (rejected,) = (await h.when(enroll_cmd())).published

    assert isinstance(rejected, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["already_enrolled"]
    assert len(h.store.enrollments) == 1


async def test_a_run_of_enrollments_admits_the_first_and_rejects_the_repeat(
    h: EnrollmentHarness,
) -> None:
    await h.when(apply_cmd(definition(0, 24)))
    h.store.calls.clear()

    outcome = await h.when(enroll_cmd(), enroll_cmd(record=BOB), enroll_cmd())

    assert [m.type for m in outcome.published] == [
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
        EnrollmentRejected.TYPE,
    ]
    rejected = only(outcome, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["already_enrolled"]
    assert h.store.calls == [
        "current_workflows",
        "workflow_statuses",
        "account_exclusivity",
        *SCREENING_CALLS,
        "enrollments_in_workflows_for_update",
        "insert_enrollments",
        "add_history",
    ]


async def test_the_contacts_phone_number_is_carried_to_enrollment_enrolled(
    h: EnrollmentHarness,
) -> None:
    await h.when(apply_cmd(definition(2, 24)))
    outcome = await h.when(enroll_cmd(phone="+44 20 7946 0958"))
    enrolled = only(outcome, EnrollmentEnrolled)
    assert enrolled.payload.contact is not None
    assert enrolled.payload.contact.phone == "+442079460958"


async def test_an_enrollment_keeps_the_contact_and_actor_it_was_enrolled_with(
    h: EnrollmentHarness,
) -> None:
    enrolled = await enrolled_in(h)

    contact, actor = h.store.enrolled_with[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert (contact, actor) == (enrolled.payload.contact, enrolled.payload.actor)


async def test_the_run_s_clock_is_when_a_record_enrolls(h: EnrollmentHarness) -> None:
    await h.when(apply_cmd(definition(1, 24)))
    h.now = T0 + HOUR

    scheduled = only(await h.when(enroll_cmd()), EnrollmentStepScheduled)

    assert scheduled.payload.due_at == T0 + 2 * HOUR
    (enrollment,) = h.store.enrollments.values()
    assert enrollment.enrolled_at == T0 + HOUR
    assert {entry.at for entry in h.store.entries} == {T0 + HOUR}
