"""Messaging: owns sends and their provider Message-IDs. Queues the steps enrollment
grants (parking those whose workflow version has not arrived), starts no provider call for
a grant that was revoked or whose lease has lapsed (``message.deferred`` asks for a
renewal), re-checks the enrollment at send time, sends through the provider outside any
transaction and reports every send's outcome: ``message.sent``, ``message.cancelled`` or
``message.failed`` (each answers a revoked grant). Records providers' delivery-status
callbacks (``message.delivery_status``) and publishes ``message.undelivered`` for a sent
message that will not arrive. Keeps each account's SMS balance (``sms_balance.credit`` and
``.configure`` on the commands topic): reserves scheduled SMS steps' segments, debits them
on send, refunds unsent ones (``sms_balance.refunded``)."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from services.messaging.config import MessagingSettings
from services.messaging.handlers import build_handlers
from services.messaging.repository import PostgresMessagingStore
from services.messaging.sender_loop import SenderLoop
from shared.contracts import topics
from shared.runtime import ServiceSpec, build_app

SPEC = ServiceSpec(
    name="messaging",
    schema="messaging",
    description=__doc__ or "",
    migrations_dir=Path(__file__).parent / "migrations",
    consumes=(
        topics.ENROLLMENT_EVENTS,
        topics.WORKFLOW_EVENTS,
        topics.INBOUND_CONVERSATION,
        topics.COMMANDS,
    ),
    publishes=(topics.MESSAGING_EVENTS, topics.DEAD_LETTER),
    settings=MessagingSettings,
    store=PostgresMessagingStore,
    handlers=build_handlers,
    background=(SenderLoop,),
)


def create_app() -> FastStream:
    """The service's FastStream app, with settings read from the environment now."""
    return build_app(SPEC)[0]
