"""Enrollment handlers on the fake store: a step that will never be sent ends its
enrollment with the reason (``message.failed``, ``message.cancelled`` for no recipient).

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import pytest

from services.enrollment.domain import Status
from shared.contracts import SYSTEM_ACTOR, topics
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    CancelReason,
    EnrollmentExited,
    EnrollmentStepCompleted,
    EnrollmentStepScheduled,
    FailureKind,
    MessageCancelled,
    MessageFailed,
)
from tests.support.builders.enrollment_commands import (
    cancelled_evt,
    definition,
    enroll_cmd,
    failed_evt,
    pause_cmd,
    sent_evt,
)
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, T0
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    enrolled_in,
    enrollment_harness,
    only,
)

pytestmark = pytest.mark.handler


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (FailureKind.HARD_BOUNCE, ExitReason.HARD_BOUNCED),
        (FailureKind.REJECTED, ExitReason.SEND_FAILED),
        (FailureKind.RETRIES_EXHAUSTED, ExitReason.SEND_FAILED),
    ],
)
async def test_a_failed_send_exits_the_enrollment_with_its_reason(
    h: EnrollmentHarness, kind: FailureKind, reason: ExitReason
) -> None:
    enrolled = await enrolled_in(h)
    failure = failed_evt(enrolled, 0, kind)

    exited = only(await h.when(failure), EnrollmentExited)

    payload = exited.payload
    assert payload.enrollment_id == enrolled.payload.enrollment_id
    assert (payload.reason, payload.source, payload.actor) == (
        reason,
        ExitSource.TRIGGER,
        SYSTEM_ACTOR,
    )
    assert payload.triggering_event is not None
    assert (payload.triggering_event.message_id, payload.triggering_event.type) == (
        failure.message_id,
        MessageFailed.TYPE,
    )
    assert payload.triggering_event.topic == topics.MESSAGING_EVENTS
    assert payload.unsent_step is not None
    assert (payload.unsent_step.step_index, payload.unsent_step.step_id) == (0, "s0")
    assert (payload.unsent_step.kind, payload.unsent_step.reason) == (
        kind.value,
        failure.payload.reason,
    )
    assert exited.causation_id == failure.message_id
    key = (ACCOUNT, enrolled.payload.enrollment_id)
    saved = h.store.enrollments[key]
    assert (saved.status, saved.exit_reason, saved.ended_at) == (Status.EXITED, reason, T0)
    assert h.store.exits[key] == (ExitSource.TRIGGER, SYSTEM_ACTOR, payload.triggering_event)
    [entry] = [e for e in h.store.entries if e.event_type == EnrollmentExited.TYPE]
    assert entry.detail["reason"] == reason.value
    assert entry.detail["unsent_step"]["kind"] == kind.value
    assert entry.caused_by == failure.message_id


async def test_a_step_with_no_recipient_exits_with_send_failed(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    cancelled = cancelled_evt(enrolled, 0, CancelReason.NO_RECIPIENT)

    exited = only(await h.when(cancelled), EnrollmentExited)

    assert exited.payload.reason is ExitReason.SEND_FAILED
    assert exited.payload.triggering_event is not None
    assert exited.payload.triggering_event.type == MessageCancelled.TYPE
    assert exited.payload.unsent_step is not None
    assert exited.payload.unsent_step.kind == "no_recipient"
    saved = h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert saved.status is Status.EXITED


@pytest.mark.parametrize(
    "reason",
    [
        CancelReason.ENROLLMENT_EXITED,
        CancelReason.ENROLLMENT_PAUSED,
        CancelReason.ENROLLMENT_COMPLETED,
    ],
)
async def test_a_send_cancelled_because_the_enrollment_changed_changes_nothing(
    h: EnrollmentHarness, reason: CancelReason
) -> None:
    enrolled = await enrolled_in(h)
    before = h.store.snapshot()

    assert (await h.when(cancelled_evt(enrolled, 0, reason))).published == []
    assert h.store.snapshot() == before


async def test_an_outcome_seen_twice_or_both_outcomes_exit_once(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    failure = failed_evt(enrolled, 0, FailureKind.REJECTED)
    h.store.calls.clear()

    outcome = await h.when(failure, failure, cancelled_evt(enrolled, 0), failed_evt(enrolled, 0))

    [exited] = outcome.published
    assert isinstance(exited, EnrollmentExited)
    assert exited.payload.reason is ExitReason.SEND_FAILED
    assert exited.causation_id == failure.message_id
    assert h.store.calls == ["enrollments_for_update", "save_exits", "add_history"]
    assert (await h.when(failure)).published == []


async def test_a_paused_enrollment_whose_send_failed_exits_too(h: EnrollmentHarness) -> None:
    """The send was under way when the pause came: the step still never went out."""
    enrolled = await enrolled_in(h)
    await h.when(pause_cmd())

    exited = only(await h.when(failed_evt(enrolled, 0)), EnrollmentExited)

    assert exited.payload.reason is ExitReason.HARD_BOUNCED


async def test_a_failure_of_a_step_already_done_changes_nothing(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h, definition(0, 24))
    sent = await h.when(sent_evt(enrolled, 0, T0))
    assert [m.type for m in sent.published] == [
        EnrollmentStepCompleted.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]

    assert (await h.when(failed_evt(enrolled, 0))).published == []
    saved = h.store.enrollments[(ACCOUNT, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.current_step) == (Status.ACTIVE, 1)


async def test_a_failed_send_frees_the_record_for_a_new_enrollment(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h, definition(0, 24, reenrollment="when_not_active"))
    await h.when(failed_evt(enrolled, 0, FailureKind.RETRIES_EXHAUSTED))

    outcome = await h.when(enroll_cmd())

    assert [m.type for m in outcome.published][:1] == ["enrollment.enrolled"]


async def test_an_outcome_never_crosses_accounts(h: EnrollmentHarness) -> None:
    enrolled = await enrolled_in(h)
    before = h.store.snapshot()

    outcome = await h.when(
        failed_evt(enrolled, 0, account_id=OTHER_ACCOUNT),
        cancelled_evt(enrolled, 0, account_id=OTHER_ACCOUNT),
    )

    assert outcome.published == []
    assert h.store.snapshot() == before
