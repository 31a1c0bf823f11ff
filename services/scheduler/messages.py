"""The scheduler's decisions as outgoing messages."""

from __future__ import annotations

from services.scheduler import domain
from services.scheduler.ports import FiredTimer
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import Resume, ResumePayload
from shared.contracts.events import StepDue, StepDuePayload


def step_due(timer: FiredTimer) -> StepDue:
    """The ``step.due`` a fired timer publishes (its id is the same each time it fires)."""
    return StepDue.create(
        message_id=domain.step_due_id(
            timer.account_id, timer.enrollment_id, timer.step_index, timer.due_at
        ),
        account_id=timer.account_id,
        payload=StepDuePayload(
            enrollment_id=timer.enrollment_id,
            workflow_id=timer.workflow_id,
            workflow_version=timer.workflow_version,
            record=timer.record,
            step_index=timer.step_index,
            step_id=timer.step_id,
            channel=timer.channel,
            due_at=timer.due_at,
        ),
    )


def resume(pause: domain.TimedPause) -> Resume:
    """The ``enrollment.resume`` that ends a timed pause: it names the pause, so it resumes
    nothing if the enrollment was resumed by hand (and maybe paused again) meanwhile."""
    command = Resume.create(
        message_id=domain.resume_id(pause.account_id, pause.enrollment_id, pause.pause_id),
        account_id=pause.account_id,
        payload=ResumePayload(
            record=pause.record,
            workflow_id=pause.workflow_id,
            enrollment_id=pause.enrollment_id,
            actor=SYSTEM_ACTOR,
            pause_id=pause.pause_id,
        ),
    )
    return command.model_copy(
        update={"correlation_id": pause.correlation_id, "causation_id": pause.pause_id}
    )
