"""The scheduler's decisions as outgoing messages."""

from __future__ import annotations

from services.scheduler import domain
from services.scheduler.ports import FiredTimer
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
