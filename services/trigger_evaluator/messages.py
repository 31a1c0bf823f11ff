"""trigger-evaluator's decisions as outgoing messages: an exit becomes ``enrollment.exit``,
a pause on an automatic reply ``enrollment.pause``, an event released from parking a dead
letter."""

from __future__ import annotations

from datetime import datetime

from services.trigger_evaluator.domain import Decision, Outcome
from services.trigger_evaluator.errors import NotAnExitError
from services.trigger_evaluator.parking import DEAD_LETTER_KIND, ParkedEvent
from shared.contracts import derived_message_id
from shared.contracts.commands import (
    Exit,
    ExitPayload,
    ExitReason,
    Pause,
    PausePayload,
    PauseReason,
    TriggeringEvent,
)
from shared.contracts.events import DeadLettered, DeadLetterPayload


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
        or not isinstance(decision.reason, ExitReason)
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
            triggering_event=_triggering(decision),
        ),
    )


def pause_command(decision: Decision, *, now: datetime) -> Pause:
    """The ``enrollment.pause`` of a pause decision (an automatic reply), issued at ``now``:
    until the planned resume, reason ``out_of_office``; same id on every replay."""
    enrollment = decision.enrollment
    if (
        decision.outcome is not Outcome.PAUSE
        or enrollment is None
        or not isinstance(decision.reason, PauseReason)
        or decision.resume is None
        or decision.exit_message_id is None
    ):
        raise NotAnExitError(f"only a pause decision becomes a pause command, not {decision!r}")
    event = decision.event
    return Pause(
        message_id=decision.exit_message_id,
        account_id=event.account_id,
        occurred_at=now,
        correlation_id=event.correlation_id,
        causation_id=event.message_id,
        payload=PausePayload(
            record=enrollment.record,
            workflow_id=enrollment.workflow_id,
            enrollment_id=enrollment.enrollment_id,
            until=decision.resume.at,
            reason=decision.reason.value,
            actor=decision.decided_by,
            triggering_event=_triggering(decision),
        ),
    )


def _triggering(decision: Decision) -> TriggeringEvent:
    event = decision.event
    return TriggeringEvent(
        message_id=event.message_id,
        type=event.event_type,
        topic=event.topic,
        occurred_at=event.occurred_at,
    )


def released(
    parked: ParkedEvent, *, why: str, consumer: str, source_topic: str, now: datetime
) -> DeadLettered:
    """The dead letter of an event released from parking: the event whole, and why.

    It is not a record the consumer failed to read, so it has no partition or offset
    (-1); ``offramp deadletters replay`` republishes the kept event to ``source_topic``,
    where it is evaluated (and, if need be, parked) again. Its id is derived from the
    event, so releasing it twice (a crash before the commit) publishes one dead letter.
    """
    event = parked.event
    value = event.to_json()
    return DeadLettered.create(
        message_id=derived_message_id("parking-released", event.account_id, event.message_id),
        account_id=event.account_id,
        occurred_at=now,
        caused_by=event,
        payload=DeadLetterPayload(
            consumer=consumer,
            source_topic=source_topic,
            source_partition=-1,
            source_offset=-1,
            source_key=event.partition_key(),
            message_id=event.message_id,
            message_type=event.type,
            error_kind=DEAD_LETTER_KIND,
            reason=why,
            attempts=1,
            original_value=value.decode(),
            original_size=len(value),
        ),
    )
