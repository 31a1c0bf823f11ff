"""Exits whose grant's lease lapsed with no answer from messaging: the loop that commits them.

An exit decided while a step's dispatch was granted waits for messaging's answer to the
revoke (``dispatch``). Messaging down or far behind never answers in time, so an exit
would wait for it forever; but messaging starts no provider call under a lapsed lease, so
once the lease (plus the allowed clock skew) is over, the exit commits here with nothing
sent after it. Replicas share the work (``SKIP LOCKED``); the exit commits through the
outbox like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.enrollment import dispatch, domain, exits
from services.enrollment.config import EnrollmentSettings
from services.enrollment.ports import EnrollmentStore
from services.enrollment.recording import record, save_changes
from shared.contracts import Message
from shared.contracts.events import EnrollmentDispatchRevoked
from shared.logging import get_logger
from shared.uow import UnitOfWork

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)

BATCH = 500


async def lapse_round(
    uow: UnitOfWork[EnrollmentStore], *, now: datetime, skew: timedelta, limit: int = BATCH
) -> int:
    """Commit up to ``limit`` exits whose grant lapsed more than ``skew`` ago."""
    exiting = await uow.store.lapsed_exits_for_update(lapsed_before=now - skew, limit=limit)
    decided: list[tuple[exits.Exited, Message]] = []
    for enrollment in exiting:
        decision = dispatch.lapse_exit(enrollment, skew=skew, now=now)
        if isinstance(decision, domain.Unchanged):
            continue
        log.warning(
            "exit_committed_after_lease",
            enrollment_id=str(enrollment.enrollment_id),
            account_id=enrollment.account_id,
            dispatch_id=str(enrollment.dispatch.dispatch_id) if enrollment.dispatch else None,
        )
        decided.append((decision, _cause(enrollment, decision)))
    await save_changes(uow.store, [d for d, _ in decided])
    await record(uow, decided, now)
    return len(decided)


def _cause(enrollment: domain.Enrollment, exited: exits.Exited) -> Message:
    """What the lapsed exit's events are derived from: a revoke of the grant it waited on,
    with an id of its own (recomputable, so a retried round publishes the same ids)."""
    granted = enrollment.dispatch
    if granted is None:  # pragma: no cover - pending exits always wait on a grant
        raise ValueError("a pending exit without a grant")
    return EnrollmentDispatchRevoked.create(
        message_id=domain.event_id(
            "exit_lapsed", enrollment.account_id, granted.dispatch_id, enrollment.enrollment_id
        ),
        account_id=enrollment.account_id,
        payload={
            "enrollment_id": enrollment.enrollment_id,
            "workflow_id": enrollment.workflow_id,
            "workflow_version": enrollment.workflow_version,
            "record": enrollment.record,
            "dispatch_id": granted.dispatch_id,
            "step_index": granted.step_index,
            "step_id": granted.step_id,
            "reason": exited.reason,
        },
    )


@dataclass(slots=True)
class LapseStats:
    committed: int = 0
    failed_rounds: int = 0
    last_round_monotonic: float = 0.0


class LapsedExits:
    """Commits exits whose grant lapsed unanswered, until the service stops (supervised)."""

    def __init__(self, runtime: ServiceRuntime[EnrollmentSettings, EnrollmentStore]) -> None:
        self._runtime = runtime
        self.stats = LapseStats()

    async def lapse_once(self) -> int:
        runtime = self._runtime
        async with runtime.begin() as uow:
            return await lapse_round(
                uow,
                now=runtime.clock(),
                skew=timedelta(seconds=runtime.settings.dispatch_clock_skew_s),
            )

    async def run(self) -> None:
        stopping = self._runtime.stopping
        while not stopping.is_set():
            try:
                committed = await self.lapse_once()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                self.stats.failed_rounds += 1
                log.warning("lapsed_exits_loop_error", error=repr(exc))
                committed = 0
            self.stats.committed += committed
            self.stats.last_round_monotonic = time.monotonic()
            if committed < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._runtime.settings.dispatch_sweep_s)
