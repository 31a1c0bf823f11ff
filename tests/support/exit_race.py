"""The exit-vs-dispatch race, measured from outside: exits published at chosen instants
around each enrollment's next step, and a tally of which sends got through after the exit.

An enrollment's exit counts from its ``enrollment.exited``'s ``occurred_at``: enrollment
stamps it inside the exit's transaction, so it is no later than the commit. A send counts
from the moment the sink received its MAIL FROM: messaging's pooled SMTP connections send
a message's MAIL FROM only after its provider call started (and took a connection), so
that is no earlier than the start of the call. A send whose MAIL FROM came after its
enrollment's exit is therefore a send whose provider call *may* have started after the
commit; zero of them proves that none did (the comparison errs towards a violation).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from shared.client import OfframpClient, of_type
from shared.contracts import Actor, RecordRef, RecordType, topics, utc_now
from shared.contracts.commands import Exit, ExitPayload, ExitReason, ExitSource
from tests.support.processes import Delivery

Events = AsyncGenerator[dict[str, Any], None]
NEAR_MS = 10.0
"""A violation this close to its exit may be a provider call already in flight when the
exit committed (the one edge the guarantee leaves): the summary counts them apart."""
LATE_PUBLISH_S = 0.02
"""An exit published this much after its chosen instant missed its slot (the test read
the step's schedule too late, or its event loop was busy): it still counts, but the
summary says how many."""


def spread(record_ids: Sequence[str], window_s: tuple[float, float], seed: int) -> dict[str, float]:
    """One offset per record, evenly spaced over ``window_s`` and dealt out at random."""
    low, high = window_s
    slots = [low + (high - low) * (k + 0.5) / len(record_ids) for k in range(len(record_ids))]
    random.Random(seed).shuffle(slots)
    return dict(zip(record_ids, slots, strict=True))


@dataclass
class PlannedExit:
    record_id: str
    enrollment_id: str
    due_at: datetime
    """When the step the exit races was scheduled for."""
    offset_s: float
    seen_at: datetime
    """When the test read that the step was scheduled."""
    published_at: datetime | None = None
    """When the exit was handed to the producer."""
    acked: bool = False
    """The broker has the exit."""

    @property
    def target(self) -> datetime:
        return self.due_at + timedelta(seconds=self.offset_s)


@dataclass
class ExitRacer:
    """Follows the enrollment events; when step ``step_index`` of one of ``offsets``'s
    records is scheduled, publishes an ``enrollment.exit`` for it at ``due_at + offset``."""

    kafka: OfframpClient
    account: str
    workflow_id: str
    step_index: int
    actor: Actor
    offsets: dict[str, float]
    planned: dict[str, PlannedExit] = field(default_factory=dict)
    exited: set[str] = field(default_factory=set)
    """Records whose ``enrollment.exited`` the racer has read."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def published(self) -> int:
        return sum(1 for plan in self.planned.values() if plan.acked)

    async def run(self) -> None:
        try:
            # ``follow`` is an async generator: closed here, its consumer stops at once.
            follow = cast(Events, self.kafka.follow(topics.ENROLLMENT_EVENTS))
            async with contextlib.aclosing(follow) as events:
                async for document in events:
                    self._plan(document)
        finally:
            for task in self._tasks:
                task.cancel()

    def _plan(self, document: dict[str, Any]) -> None:
        if document.get("account_id") != self.account:
            return
        payload = document["payload"]
        if document.get("type") == "enrollment.exited":
            self.exited.add(payload["record"]["id"])
        if document.get("type") != "enrollment.step_scheduled":
            return
        record_id = payload["record"]["id"]
        if (
            payload["step_index"] != self.step_index
            or record_id not in self.offsets
            or record_id in self.planned
        ):
            return
        plan = PlannedExit(
            record_id,
            payload["enrollment_id"],
            datetime.fromisoformat(payload["due_at"]),
            self.offsets[record_id],
            utc_now(),
        )
        self.planned[record_id] = plan
        task = asyncio.create_task(self._exit_at(plan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _exit_at(self, plan: PlannedExit) -> None:
        # The experiment itself: the exit goes out at its chosen instant, not on a condition.
        await asyncio.sleep(max((plan.target - utc_now()).total_seconds(), 0.0))
        plan.published_at = utc_now()
        await self.kafka.publish(
            Exit.create(
                account_id=self.account,
                payload=ExitPayload(
                    record=RecordRef(type=RecordType.CONTACT, id=plan.record_id),
                    workflow_id=self.workflow_id,
                    enrollment_id=uuid.UUID(plan.enrollment_id),
                    reason=ExitReason.MANUAL,
                    source=ExitSource.MANUAL,
                    actor=self.actor,
                ),
            )
        )
        plan.acked = True


@contextlib.asynccontextmanager
async def racing(racer: ExitRacer) -> AsyncIterator[ExitRacer]:
    """``racer`` follows the topic for the duration of the block."""
    task = asyncio.create_task(racer.run())
    try:
        yield racer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class RaceTally:
    """What became of each raced step, per record."""

    races: int
    late_publishes: int
    notice_ms: tuple[float, float]
    """How long before its due time the test read that a step was scheduled (min, median):
    an exit whose offset is earlier than that is published late, at once."""
    exits_missing: list[str]
    exits_doubled: list[str]
    sent_before_exit: int
    not_sent: int
    cancelled: int
    violations: dict[str, float]
    """Record id -> how many ms after its exit the step's SMTP session began."""
    sent_without_exit: list[str]
    sent_twice: list[str]
    later_step_sent: list[str]
    closest_before_ms: float | None
    """The smallest margin by which a raced step beat its exit (how tight the race ran)."""
    dispatch_lag_ms: float | None
    """Median time from a raced step's due time to its SMTP session (where exits bite)."""

    def summary(self) -> str:
        lateness = sorted(self.violations.values())
        late = (
            f"max lateness {lateness[-1]:.1f} ms, median {statistics.median(lateness):.1f} ms"
            if lateness
            else "max lateness -"
        )
        closest = "-" if self.closest_before_ms is None else f"{self.closest_before_ms:.1f} ms"
        lag = "-" if self.dispatch_lag_ms is None else f"{self.dispatch_lag_ms:.0f} ms"
        parts = [
            f"exit-vs-dispatch race: {self.races} races",
            f"step sent before exit {self.sent_before_exit}",
            f"not sent {self.not_sent} (message.cancelled {self.cancelled})",
            f"VIOLATIONS {len(self.violations)} ({late}, "
            f"{sum(1 for ms in lateness if ms <= NEAR_MS)} within {NEAR_MS:.0f} ms)",
            f"closest send before its exit {closest}",
            f"exits missing {len(self.exits_missing)}",
            f"exited twice {len(self.exits_doubled)}",
            f"sent without exit {len(self.sent_without_exit)}",
            f"sent twice {len(self.sent_twice)}",
            f"later step sent {len(self.later_step_sent)}",
            f"exits published late {self.late_publishes}",
            f"step reached the sink {lag} after due (median)",
            f"step scheduled seen {self.notice_ms[0]:.0f} ms (min), "
            f"{self.notice_ms[1]:.0f} ms (median) before due",
        ]
        return ", ".join(parts)


def tally(
    racer: ExitRacer,
    record_ids: Sequence[str],
    enrollment_events: list[dict[str, Any]],
    messaging_events: list[dict[str, Any]],
    deliveries: list[Delivery],
    *,
    subject: str,
    later_subject: str,
) -> RaceTally:
    """Each record's raced step (mailed with ``subject``) against its exit; no record may
    get ``later_subject`` at all. Records are mailed at ``<record id>@example.com``."""
    account = racer.account
    # Per record, each distinct exit (a relay may publish one event twice: one fact).
    exits: dict[str, dict[str, datetime]] = defaultdict(dict)
    for event in of_type(enrollment_events, "enrollment.exited"):
        if event["account_id"] == account:
            exits[event["payload"]["record"]["id"]][event["message_id"]] = datetime.fromisoformat(
                event["occurred_at"]
            )
    mailed: dict[str, list[Delivery]] = defaultdict(list)
    later: set[str] = set()
    for delivery in deliveries:
        record_id = str(delivery.message["To"]).removesuffix("@example.com")
        if delivery.message["Subject"] == subject:
            mailed[record_id].append(delivery)
        elif delivery.message["Subject"] == later_subject:
            later.add(record_id)
    cancelled = sum(
        1
        for event in of_type(messaging_events, "message.cancelled")
        if event["account_id"] == account and event["payload"]["step_index"] == racer.step_index
    )
    violations: dict[str, float] = {}
    margins: list[float] = []
    for record_id in record_ids:
        if not exits[record_id] or not mailed[record_id]:
            continue
        exited_at = min(exits[record_id].values())
        mail_from_at = max(d.mail_from_at for d in mailed[record_id])  # a re-send counts too
        gap_ms = (mail_from_at - exited_at).total_seconds() * 1000
        if gap_ms > 0:
            violations[record_id] = gap_ms
        else:
            margins.append(-gap_ms)
    notice = [(p.due_at - p.seen_at).total_seconds() * 1000 for p in racer.planned.values()]
    lags = [
        (delivery.mail_from_at - plan.due_at).total_seconds() * 1000
        for record_id, plan in racer.planned.items()
        for delivery in mailed[record_id]
    ]
    return RaceTally(
        races=racer.published,
        notice_ms=(min(notice), statistics.median(notice)) if notice else (0.0, 0.0),
        late_publishes=sum(
            1
            for plan in racer.planned.values()
            if plan.published_at is not None
            and (plan.published_at - plan.target).total_seconds() > LATE_PUBLISH_S
        ),
        exits_missing=[r for r in record_ids if not exits[r]],
        exits_doubled=[r for r in record_ids if len(exits[r]) > 1],
        sent_before_exit=len(margins),
        not_sent=sum(1 for r in record_ids if not mailed[r]),
        cancelled=cancelled,
        violations=violations,
        sent_without_exit=[r for r in record_ids if mailed[r] and not exits[r]],
        sent_twice=[r for r in record_ids if len(mailed[r]) > 1],
        later_step_sent=sorted(later),
        closest_before_ms=min(margins) if margins else None,
        dispatch_lag_ms=statistics.median(lags) if lags else None,
    )
