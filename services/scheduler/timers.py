"""The due-timer loop: fires due timers and publishes ``step.due`` via the outbox.

Any number of scheduler replicas run it side by side: ``FOR UPDATE SKIP LOCKED`` gives
each due timer to exactly one of them, and firing and publishing commit together.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from services.scheduler import domain
from services.scheduler.config import SchedulerSettings
from services.scheduler.repository import fire_due
from shared.contracts import RecordRef, RecordType, utc_now
from shared.contracts.events import StepDue, StepDuePayload
from shared.contracts.inbound import Channel
from shared.logging import get_logger
from shared.outbox import UnitOfWork, write_outbox

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)


def step_due_message(row: dict[str, Any]) -> StepDue:
    return StepDue.create(
        message_id=domain.step_due_id(
            row["account_id"], row["enrollment_id"], row["step_index"], row["due_at"]
        ),
        account_id=row["account_id"],
        payload=StepDuePayload(
            enrollment_id=row["enrollment_id"],
            workflow_id=row["workflow_id"],
            workflow_version=row["workflow_version"],
            record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
            step_index=row["step_index"],
            step_id=row["step_id"],
            channel=Channel(row["channel"]),
            due_at=row["due_at"],
        ),
    )


async def fire_once(runtime: ServiceRuntime, *, limit: int) -> int:
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await fire_due(conn, now=utc_now(), limit=limit)
        uow = UnitOfWork(conn)
        for row in rows:
            uow.publish(step_due_message(row))
        await write_outbox(conn, uow.outgoing)
    return len(rows)


async def due_timer_loop(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, SchedulerSettings)  # noqa: S101 - wired in app.py
    stats = runtime.extras.setdefault("timers", {"fired": 0, "last_tick_monotonic": 0.0})
    while True:
        try:
            fired = await fire_once(runtime, limit=settings.scheduler_batch_size)
        except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
            log.warning("due_timer_loop_error", error=repr(exc))
            await asyncio.sleep(1.0)
            continue
        stats["fired"] += fired
        stats["last_tick_monotonic"] = time.monotonic()
        if fired:
            log.debug("timers_fired", count=fired)
        if fired < settings.scheduler_batch_size:
            await asyncio.sleep(settings.scheduler_tick_s)
