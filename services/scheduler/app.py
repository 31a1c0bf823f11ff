"""Scheduler: owns step timers; fires ``step.due`` when a step's time has come."""

from __future__ import annotations

from pathlib import Path

from services.scheduler.config import SchedulerSettings
from services.scheduler.handlers import build_handlers
from services.scheduler.timers import due_timer_loop
from shared.contracts import topics
from shared.runtime import ServiceSpec, build_app

SPEC = ServiceSpec(
    name="scheduler",
    schema="scheduler",
    description=__doc__ or "",
    migrations_dir=Path(__file__).parent / "migrations",
    consumes=(topics.ENROLLMENT_EVENTS,),
    publishes=(topics.SCHEDULER_STEPS, topics.DEAD_LETTER),
    handlers=lambda _runtime: build_handlers(),
    background=(due_timer_loop,),
)

app, runtime = build_app(SPEC, SchedulerSettings())
