"""The handler of delivery-status callbacks (``message.delivery_status`` on
``offramp.inbound.conversation.v1``): load the sends a run's reports name, decide each
report in order (``delivery``), store the latest report of each send and publish
``message.undelivered`` for a sent message that will not arrive."""

from __future__ import annotations

from datetime import datetime

from services.messaging import delivery, messages
from services.messaging.ports import MessagingStore
from shared.contracts.inbound import MessageDeliveryStatus
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)


def _report(event: MessageDeliveryStatus) -> delivery.Report:
    payload = event.payload
    return delivery.Report(
        account_id=event.account_id,
        provider_message_id=payload.provider_message_id,
        status=payload.status,
        provider_reference=payload.provider_reference,
        error_code=payload.error_code,
        error_message=payload.error_message,
        reported_at=event.occurred_at,
        cause_message_id=event.message_id,
        correlation_id=event.correlation_id or event.message_id,
    )


async def delivery_reported(
    uow: UnitOfWork[MessagingStore], events: list[MessageDeliveryStatus], now: datetime
) -> None:
    """Record what providers reported about sent messages (one load, one write per run)."""
    del now  # a report carries its own time (the envelope's occurred_at)
    reports = [_report(event) for event in events]
    known = await uow.store.sends_reported({report.ref for report in reports})
    recorded: list[delivery.DeliveryRecorded] = []
    for report in reports:
        after, record, undelivered = delivery.decide(known.get(report.ref), report)
        if after is None:
            log.info(
                "delivery_report_for_unknown_message",
                account_id=report.account_id,
                provider_message_id=report.provider_message_id,
                status=report.status.value,
            )
            continue
        known[report.ref] = after
        if record is not None:
            recorded.append(record)
        if undelivered is not None:
            uow.publish(messages.message_undelivered(undelivered))
            log.warning(
                "message_undelivered",
                account_id=report.account_id,
                enrollment_id=str(undelivered.send.enrollment_id),
                step_index=undelivered.send.step_index,
                kind=undelivered.kind.value,
                reason=undelivered.reason,
            )
    await uow.store.record_deliveries(recorded)
