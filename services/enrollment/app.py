"""Enrollment: owns workflows and enrollments, the source of truth for who is in what
workflow and why they left."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from services.enrollment.config import EnrollmentSettings
from services.enrollment.dispatch_loop import LapsedExits
from services.enrollment.exclusion_handlers import build_all_handlers
from services.enrollment.parking import ParkedEnrolls
from services.enrollment.repository import PostgresEnrollmentStore
from services.enrollment.sweeps import WorkflowSweeps
from shared.contracts import topics
from shared.runtime import ServiceSpec, build_app

SPEC = ServiceSpec(
    name="enrollment",
    schema="enrollment",
    description=__doc__ or "",
    migrations_dir=Path(__file__).parent / "migrations",
    # Record data and suppressed addresses feed the exclusion rules enrollment owns.
    consumes=(
        topics.COMMANDS,
        topics.SCHEDULER_STEPS,
        topics.MESSAGING_EVENTS,
        topics.INBOUND_CRM,
        topics.INBOUND_EMAIL,
    ),
    publishes=(
        topics.WORKFLOW_EVENTS,
        topics.ENROLLMENT_EVENTS,
        topics.EXCLUSION_EVENTS,
        topics.DEAD_LETTER,
    ),
    settings=EnrollmentSettings,
    store=PostgresEnrollmentStore,
    handlers=build_all_handlers,
    background=(ParkedEnrolls, LapsedExits, WorkflowSweeps),
)


def create_app() -> FastStream:
    """The service's FastStream app, with settings read from the environment now."""
    return build_app(SPEC)[0]
