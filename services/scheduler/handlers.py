"""Scheduler subscribers: enrollment events become timers, or void them."""

from __future__ import annotations

from collections.abc import Mapping

from services.scheduler import domain, repository
from shared.consumer import Handler
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentStepScheduled,
)
from shared.logging import get_logger
from shared.outbox import UnitOfWork

log = get_logger(__name__)


async def step_scheduled(uow: UnitOfWork, event: EnrollmentStepScheduled) -> None:
    step = event.payload
    ended = await repository.is_ended(uow.conn, step.enrollment_id)
    decision = domain.on_step_scheduled(enrollment_ended=ended)
    if decision.action is domain.TimerAction.SCHEDULE:
        await repository.upsert_timer(uow.conn, event.account_id, step)
    else:
        log.info("timer_not_scheduled", enrollment_id=str(step.enrollment_id), why=decision.why)


async def enrollment_stopped(
    uow: UnitOfWork, event: EnrollmentExited | EnrollmentCompleted | EnrollmentPaused
) -> None:
    enrollment_id = event.payload.enrollment_id
    decision = domain.on_enrollment_event(event.type)
    if decision.action is not domain.TimerAction.CANCEL:
        return
    if event.type in domain.ENDING_EVENTS:
        await repository.mark_ended(uow.conn, enrollment_id, decision.why)
    cancelled = await repository.cancel_pending(uow.conn, enrollment_id, decision.why)
    log.info(
        "timers_cancelled", enrollment_id=str(enrollment_id), count=cancelled, why=decision.why
    )


def build_handlers() -> Mapping[str, Handler]:
    return {
        EnrollmentStepScheduled.TYPE: step_scheduled,
        EnrollmentExited.TYPE: enrollment_stopped,
        EnrollmentCompleted.TYPE: enrollment_stopped,
        EnrollmentPaused.TYPE: enrollment_stopped,
    }
