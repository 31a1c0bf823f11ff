"""Scheduler: owns step timers and timed pauses' resume timers; fires ``step.due`` when a
step's time has come and ``enrollment.resume`` when a timed pause ends."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from services.scheduler.config import SchedulerSettings
from services.scheduler.handlers import build_handlers
from services.scheduler.repository import PostgresSchedulerStore
from services.scheduler.timers import DueTimers
from shared.contracts import topics
from shared.runtime import ServiceSpec, build_app

SPEC = ServiceSpec(
    name="scheduler",
    schema="scheduler",
    description=__doc__ or "",
    migrations_dir=Path(__file__).parent / "migrations",
    consumes=(topics.ENROLLMENT_EVENTS,),
    publishes=(topics.SCHEDULER_STEPS, topics.COMMANDS, topics.DEAD_LETTER),
    settings=SchedulerSettings,
    store=PostgresSchedulerStore,
    handlers=lambda _settings: build_handlers(),
    background=(DueTimers,),
)


def create_app() -> FastStream:
    """The service's FastStream app, with settings read from the environment now."""
    return build_app(SPEC)[0]
