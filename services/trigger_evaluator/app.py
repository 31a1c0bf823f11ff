"""trigger-evaluator: turns inbound events (replies, clicks, bounces, meetings, deals...)
into ``enrollment.exit`` commands for the enrollments whose workflows asked for it, and
automatic (out-of-office) replies into ``enrollment.pause`` until their sender is back."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from services.trigger_evaluator.config import TriggerEvaluatorSettings
from services.trigger_evaluator.handlers import build_handlers
from services.trigger_evaluator.parking_loop import ParkingLoop
from services.trigger_evaluator.repository import PostgresTriggerEvaluatorStore
from shared.contracts import topics
from shared.runtime import ServiceSpec, build_app

SPEC = ServiceSpec(
    name="trigger-evaluator",
    schema="trigger_evaluator",
    description=__doc__ or "",
    migrations_dir=Path(__file__).parent / "migrations",
    consumes=(
        topics.INBOUND_EMAIL,
        topics.INBOUND_WEB,
        topics.INBOUND_CRM,
        topics.INBOUND_CONVERSATION,
        topics.WORKFLOW_EVENTS,
        topics.ENROLLMENT_EVENTS,
        topics.MESSAGING_EVENTS,
    ),
    publishes=(topics.COMMANDS, topics.DEAD_LETTER),
    settings=TriggerEvaluatorSettings,
    store=PostgresTriggerEvaluatorStore,
    handlers=build_handlers,
    background=(ParkingLoop,),
)


def create_app() -> FastStream:
    """The service's FastStream app, with settings read from the environment now."""
    return build_app(SPEC)[0]
