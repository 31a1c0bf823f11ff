"""The exits a paused or deleted workflow owes: the loop that makes them, chunk by chunk;
and the workflows that became active or inactive, which it publishes.

``workflow.pause`` / ``workflow.delete`` commit the workflow's new status and a sweep;
this loop then exits its live enrollments ``OFFRAMP_SWEEP_CHUNK`` at a time, one
transaction per chunk, through the normal exit path (an enrollment with a granted send
waits for its outcome), and publishes ``workflow.exits_progress`` after each chunk. Every
exit and progress event is caused by the command. A transaction that fails is retried by
the next round: what committed stays done, and the ids it published are derived from the
command, so nothing is published twice under two ids. Replicas share sweeps (``SKIP
LOCKED``).

Whether a workflow is active (has a live enrollment) is looked at by the same loop after
each round, in one statement over the workflows, and a change is published as
``workflow.activity_changed`` (the settled state, within ``OFFRAMP_SWEEP_IDLE_S``): the
handlers that admit and end enrollments neither lock the workflow nor publish it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from services.enrollment import lifecycle
from services.enrollment.config import EnrollmentSettings
from services.enrollment.lifecycle_messages import activity_changed, exits_progress
from services.enrollment.ports import EnrollmentStore
from services.enrollment.recording import record, save_changes
from shared.logging import get_logger
from shared.uow import UnitOfWork

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)


async def sweep_round(uow: UnitOfWork[EnrollmentStore], *, now: datetime, limit: int) -> int | None:
    """Exit one chunk of the oldest unfinished sweep; returns how many enrollments it
    loaded, None when no sweep is left."""
    found = await uow.store.next_sweep_for_update()
    if found is None:
        return None
    sweep, command = found
    live = await uow.store.live_in_workflow_for_update(sweep, limit=limit)
    progress, decided = lifecycle.sweep_chunk(sweep, live, limit=limit, now=now)
    await save_changes(uow.store, decided)
    await record(uow, [(d, command) for d in decided], now)
    await uow.store.save_sweep(progress)
    uow.publish(exits_progress(progress, command))
    log.info(
        "workflow_sweep_chunk",
        workflow_id=sweep.workflow_id,
        chunk=progress.chunks,
        exited=progress.exited,
        waiting=progress.waiting,
        done=progress.done,
    )
    return len(live)


async def activity_round(uow: UnitOfWork[EnrollmentStore]) -> int:
    """Publish every workflow whose activity changed since the last round."""
    changed = await uow.store.refresh_activity()
    for change in changed:
        uow.publish(activity_changed(change))
    if changed:
        log.info("workflow_activity_changed", count=len(changed))
    return len(changed)


@dataclass(slots=True)
class SweepStats:
    exited: int = 0
    failed_rounds: int = 0
    last_round_monotonic: float = 0.0


class WorkflowSweeps:
    """Makes the exits of paused and deleted workflows, until the service stops."""

    def __init__(self, runtime: ServiceRuntime[EnrollmentSettings, EnrollmentStore]) -> None:
        self._runtime = runtime
        self.stats = SweepStats()

    async def sweep_once(self) -> int | None:
        runtime = self._runtime
        async with runtime.begin() as uow:
            loaded = await sweep_round(uow, now=runtime.clock(), limit=runtime.settings.sweep_chunk)
        async with runtime.begin() as uow:
            await activity_round(uow)
        return loaded

    async def run(self) -> None:
        stopping = self._runtime.stopping
        while not stopping.is_set():
            try:
                loaded = await self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                self.stats.failed_rounds += 1
                log.warning("workflow_sweeps_loop_error", error=repr(exc))
                loaded = None
            self.stats.exited += loaded or 0
            self.stats.last_round_monotonic = time.monotonic()
            if loaded is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._runtime.settings.sweep_idle_s)
