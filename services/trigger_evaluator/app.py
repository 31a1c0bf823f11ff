"""trigger-evaluator: turns inbound events (replies, clicks, bounces, meetings, deals...)
into ``enrollment.exit`` commands for the enrollments whose workflows asked for it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.trigger_evaluator.config import TriggerEvaluatorSettings
from services.trigger_evaluator.handlers import build_handlers
from shared.consumer import Batched
from shared.contracts import topics
from shared.runtime import ServiceRuntime, ServiceSpec, build_app


def _handlers(runtime: ServiceRuntime) -> Mapping[str, Batched]:
    settings = runtime.settings
    assert isinstance(settings, TriggerEvaluatorSettings)  # noqa: S101 - wired below
    return build_handlers(ignored_company_domains=settings.company_reply_ignored_domains)


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
    handlers=_handlers,
)

app, runtime = build_app(SPEC, TriggerEvaluatorSettings())
