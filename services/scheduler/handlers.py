"""Scheduler subscribers: enrollment events become timers, or void them.

Two kinds of timer: a step's (``step.due``) and a timed pause's (``enrollment.resume``).

Both handlers take a whole run of consecutive messages and apply it with a fixed number
of statements, exactly as if the messages were applied one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from services.scheduler import domain
from services.scheduler.ports import ArmTimer, SchedulerStore
from shared.consumer import Handler
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentStepScheduled,
)
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

StopEvent = EnrollmentExited | EnrollmentCompleted | EnrollmentPaused | EnrollmentResumed


def _timed_pause(event: StopEvent) -> domain.TimedPause | None:
    if not isinstance(event, EnrollmentPaused) or event.payload.until is None:
        return None
    paused = event.payload
    until = event.payload.until
    return domain.TimedPause(
        account_id=event.account_id,
        enrollment_id=paused.enrollment_id,
        pause_id=event.message_id,
        workflow_id=paused.workflow_id,
        record=paused.record,
        until=until,
        correlation_id=event.correlation_id or event.message_id,
    )


async def steps_scheduled(
    uow: UnitOfWork[SchedulerStore], events: list[EnrollmentStepScheduled], now: datetime
) -> None:
    """Arm a timer per scheduled step, except for enrollments that already ended.

    No enrollment ends within such a run (stops are another handler's run), so whether it
    ended is looked up once for the whole run: 2 statements per run.
    """
    del now  # a timer's due time comes with the step
    ended = await uow.store.ended_among({(e.account_id, e.payload.enrollment_id) for e in events})
    arm: list[ArmTimer] = []
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
        await uow.store.arm_timers(arm)


async def enrollments_stopped(
    uow: UnitOfWork[SchedulerStore], events: list[StopEvent], now: datetime
) -> None:
    """Remember exits and completions and cancel pending timers: 2 statements per run.

    Cancelling a stopped enrollment's timers voids its pending resume too; a resume voids
    it alone (one statement more, in runs that hold resumes) and a timed pause then arms
    its own (one more, in runs that hold them).
    """
    del now
    plan = domain.plan_stops(((e.account_id, e.payload.enrollment_id), e.type) for e in events)
    if plan.ended:  # pauses end nothing
        await uow.store.mark_ended(plan.ended)
    cancelled = await uow.store.cancel_pending(plan.cancel)
    resumes = domain.plan_resumes(
        ((e.account_id, e.payload.enrollment_id), e.type, _timed_pause(e)) for e in events
    )
    if resumed_only := resumes.drop - plan.cancel.keys():
        dropped = await uow.store.drop_resumes(resumed_only)
        for (_, enrollment_id), count in dropped.items():
            log.info("resume_timer_dropped", enrollment_id=str(enrollment_id), count=count)
    if resumes.arm:
        await uow.store.arm_resumes(list(resumes.arm.values()))
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


def build_handlers() -> Mapping[str, Handler]:
    # One handler for the three stops and the resume (which ends a timed pause): the
    # pipeline puts consecutive messages of the same handler in one run, so a stream of
    # mixed exits, pauses and resumes is still one run.
    return {
        EnrollmentStepScheduled.TYPE: steps_scheduled,
        EnrollmentExited.TYPE: enrollments_stopped,
        EnrollmentCompleted.TYPE: enrollments_stopped,
        EnrollmentPaused.TYPE: enrollments_stopped,
        EnrollmentResumed.TYPE: enrollments_stopped,
    }
