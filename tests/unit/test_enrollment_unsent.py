"""A step that will never be sent: which outcomes end the enrollment, and with what."""

from __future__ import annotations

import uuid

import pytest

from services.enrollment.domain import Enrollment, Status, Unchanged
from services.enrollment.exits import Exited, UnsentStep, exit_reason_for
from services.enrollment.steps import on_step_unsent
from shared.contracts import topics
from shared.contracts.commands import ExitReason, TriggeringEvent
from shared.contracts.events import CancelReason, FailureKind
from tests.support.builders.enrollment_domain import NOW, enrollment

pytestmark = pytest.mark.unit

TRIGGER = TriggeringEvent(
    message_id=uuid.uuid4(), type="message.failed", topic=topics.MESSAGING_EVENTS, occurred_at=NOW
)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (FailureKind.HARD_BOUNCE, ExitReason.HARD_BOUNCED),
        (FailureKind.REJECTED, ExitReason.SEND_FAILED),
        (FailureKind.RETRIES_EXHAUSTED, ExitReason.SEND_FAILED),
        (CancelReason.NO_RECIPIENT, ExitReason.SEND_FAILED),
        (CancelReason.ENROLLMENT_EXITED, None),
        (CancelReason.ENROLLMENT_PAUSED, None),
        (CancelReason.ENROLLMENT_COMPLETED, None),
    ],
)
def test_every_outcome_has_its_exit_reason_or_none(
    kind: FailureKind | CancelReason, reason: ExitReason | None
) -> None:
    assert exit_reason_for(kind) is reason


def test_the_current_step_failing_exits_and_carries_the_step() -> None:
    unsent = UnsentStep(1, "s1", FailureKind.HARD_BOUNCE, "550 5.1.1 no such user")
    decision = on_step_unsent(enrollment(current_step=1), unsent, trigger=TRIGGER, now=NOW)

    assert isinstance(decision, Exited)
    assert (decision.enrollment.status, decision.enrollment.ended_at) == (Status.EXITED, NOW)
    assert (decision.reason, decision.unsent, decision.triggering_event) == (
        ExitReason.HARD_BOUNCED,
        unsent,
        TRIGGER,
    )


@pytest.mark.parametrize(
    ("state", "unsent"),
    [
        (enrollment(Status.EXITED), UnsentStep(0, "s0", FailureKind.REJECTED, "no")),
        (enrollment(Status.COMPLETED), UnsentStep(0, "s0", FailureKind.REJECTED, "no")),
        (enrollment(current_step=2), UnsentStep(1, "s1", FailureKind.REJECTED, "no")),
        (enrollment(), UnsentStep(0, "s0", CancelReason.ENROLLMENT_PAUSED, "paused")),
    ],
)
def test_an_ended_enrollment_an_old_step_or_an_echo_changes_nothing(
    state: Enrollment, unsent: UnsentStep
) -> None:
    assert isinstance(on_step_unsent(state, unsent, trigger=TRIGGER, now=NOW), Unchanged)
