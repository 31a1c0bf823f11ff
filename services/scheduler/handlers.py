"""Scheduler subscribers: enrollment events become timers, or void them.

Both handlers take a whole run of consecutive messages (``Batched``) and apply it with a
fixed number of statements, exactly as if the messages were applied one by one.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.scheduler import domain, repository
from shared.consumer import Batched
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentStepScheduled,
)
from shared.logging import get_logger
from shared.outbox import UnitOfWork

log = get_logger(__name__)

StopEvent = EnrollmentExited | EnrollmentCompleted | EnrollmentPaused


async def steps_scheduled(uow: UnitOfWork, events: list[EnrollmentStepScheduled]) -> None:
    """Arm a timer per scheduled step, except for enrollments that already ended.

    No enrollment ends within such a run (stops are another handler's run), so whether it
    ended is looked up once for the whole run: 2 statements per run.
    """
    ended = await repository.ended_among(
        uow.conn, {(e.account_id, e.payload.enrollment_id) for e in events}
    )
    arm: list[repository.ArmTimer] = []
    for event in events:
        step = event.payload
        decision = domain.on_step_scheduled(
            enrollment_ended=(event.account_id, step.enrollment_id) in ended
        )
        if decision.action is domain.TimerAction.SCHEDULE:
            arm.append((event.account_id, step))
        else:
            log.info("timer_not_scheduled", enrollment_id=str(step.enrollment_id), why=decision.why)
    if arm:
        await repository.upsert_timers(uow.conn, arm)


async def enrollments_stopped(uow: UnitOfWork, events: list[StopEvent]) -> None:
    """Remember exits and completions and cancel pending timers: 2 statements per run."""
    plan = domain.plan_stops(((e.account_id, e.payload.enrollment_id), e.type) for e in events)
    if plan.ended:  # pauses end nothing
        await repository.mark_ended(uow.conn, plan.ended)
    cancelled = await repository.cancel_pending(uow.conn, plan.cancel)
    for event in events:
        enrollment_id = event.payload.enrollment_id
        decision = domain.on_enrollment_event(event.type)
        if decision.action is domain.TimerAction.CANCEL:
            # The first stop of an enrollment cancelled its timers; later ones found none.
            log.info(
                "timers_cancelled",
                enrollment_id=str(enrollment_id),
                count=cancelled.pop((event.account_id, enrollment_id), 0),
                why=decision.why,
            )


def build_handlers() -> Mapping[str, Batched]:
    # One instance for the three stops: the pipeline puts consecutive messages of the same
    # handler in one run, so a stream of mixed exits and pauses is still one run.
    stopped = Batched(enrollments_stopped)
    return {
        EnrollmentStepScheduled.TYPE: Batched(steps_scheduled),
        EnrollmentExited.TYPE: stopped,
        EnrollmentCompleted.TYPE: stopped,
        EnrollmentPaused.TYPE: stopped,
    }
