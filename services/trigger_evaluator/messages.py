"""trigger-evaluator's decisions as outgoing messages: an exit becomes ``enrollment.exit``."""

from __future__ import annotations

from datetime import datetime

from services.trigger_evaluator.domain import Decision, Outcome
from services.trigger_evaluator.errors import NotAnExitError
from shared.contracts.commands import Exit, ExitPayload, TriggeringEvent


def exit_command(decision: Decision, *, now: datetime) -> Exit:
    """The ``enrollment.exit`` command of an exit decision, issued at ``now``.

    Its id is derived from the event and the enrollment, so a replayed or duplicated event
    yields the very same command and enrollment drops the repeat. It carries the event's
    flow on: caused by the event, in the event's correlation.
    """
    enrollment = decision.enrollment
    if (
        decision.outcome is not Outcome.EXIT
        or enrollment is None
        or decision.reason is None
        or decision.exit_message_id is None
    ):
        raise NotAnExitError(f"only an exit decision becomes an exit command, not {decision!r}")
    event = decision.event
    return Exit(
        message_id=decision.exit_message_id,
        account_id=event.account_id,
        occurred_at=now,
        correlation_id=event.correlation_id,
        causation_id=event.message_id,
        payload=ExitPayload(
            record=enrollment.record,
            workflow_id=enrollment.workflow_id,
            enrollment_id=enrollment.enrollment_id,
            reason=decision.reason,
            source=decision.source,
            actor=decision.decided_by,
            triggering_event=TriggeringEvent(
                message_id=event.message_id,
                type=event.event_type,
                topic=event.topic,
                occurred_at=event.occurred_at,
            ),
        ),
    )
