"""The sender loop: claims pending sends, re-checks the enrollment, calls the provider,
and records the outcome with its ``message.sent`` / ``message.cancelled`` in one transaction.

Why one transaction around the provider calls: the claim share-locks each enrollment's
projection row, so an exit (or pause, or completion) that messaging applies either
committed before the claim, and the claim sees it and cancels, or waits until the sends
of this transaction are committed. Once messaging has seen an exit, nothing is sent for
that enrollment. The price is that applying such an exit waits for the sender's current
transaction: one provider round (bounded by ``send_timeout_s`` per call) at worst.

Delivery to the provider is at least once with a stable id: if the process dies (or the
commit fails) after the provider accepted a message, the send is still ``pending`` and is
sent again, with the SAME Message-ID header, because the id is derived from
(enrollment, step). Receivers, threading and our reply matching then see one message;
``message.sent`` itself has a derived id, so consumers drop its repeats.

Any number of replicas run this loop: a row lock with SKIP LOCKED gives each send to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.messaging import domain, messages
from services.messaging.config import MessagingSettings
from services.messaging.errors import ProviderError
from services.messaging.ports import MessagingStore
from services.messaging.providers import EmailProvider, build_providers
from services.messaging.wakeups import Wakeup, listen
from shared.contracts.inbound import Channel
from shared.logging import get_logger
from shared.uow import UnitOfWork

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

log = get_logger(__name__)


@dataclass(slots=True)
class SenderStats:
    sent: int = 0
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    last_tick_monotonic: float = 0.0


class Sender:
    """Decides and performs the sends of one transaction; storage comes through the unit
    of work's store."""

    def __init__(
        self,
        providers: Mapping[Channel, EmailProvider],
        *,
        clock: Callable[[], datetime],
        batch_size: int = 100,
        concurrency: int = 32,
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        backoff_s: float = 2.0,
        backoff_max_s: float = 300.0,
        orphan_grace_s: float = 300.0,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """``clock`` stamps the moment a provider accepts a message (``sent_at``); once
        ``stopping`` says so, no provider call starts (those under way finish)."""
        self._providers = providers
        self._clock = clock
        self._batch_size = batch_size
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout_s = timeout_s
        self._retry = domain.RetryPolicy(max_attempts, backoff_s, backoff_max_s)
        self._orphan_grace = timedelta(seconds=orphan_grace_s)
        self._stopping = stopping
        self.stats = SenderStats()

    @classmethod
    def from_settings(
        cls,
        settings: MessagingSettings,
        *,
        clock: Callable[[], datetime],
        stopping: Callable[[], bool] = lambda: False,
    ) -> Sender:
        """A sender with the configured providers and limits."""
        return cls(
            build_providers(settings),
            clock=clock,
            stopping=stopping,
            batch_size=settings.send_batch_size,
            concurrency=settings.send_concurrency,
            timeout_s=settings.send_timeout_s,
            max_attempts=settings.send_max_attempts,
            backoff_s=settings.send_retry_backoff_s,
            backoff_max_s=settings.send_retry_backoff_max_s,
            orphan_grace_s=settings.send_orphan_grace_s,
        )

    async def process(self, uow: UnitOfWork[MessagingStore], *, now: datetime) -> int:
        """Claim due sends, cancel or send each, record outcomes; returns how many claimed.

        Runs inside the unit of work's transaction, which must commit (with what it
        publishes) only after this returns.
        """
        claimed = await uow.store.claim_due(now=now, limit=self._batch_size)
        cancelled: list[domain.Cancelled] = []
        deliveries: list[tuple[domain.Send, str]] = []
        for item in claimed:
            decision = domain.decide_send(item)
            if isinstance(decision, domain.Cancel):
                stopped = domain.cancelled(item, decision)
                cancelled.append(stopped)
                uow.publish(messages.message_cancelled(stopped))
            else:
                deliveries.append((item.send, decision.recipient))
        await uow.store.mark_cancelled(cancelled)
        self.stats.cancelled += len(cancelled)
        for cancel in cancelled:
            log.info(
                "send_cancelled",
                enrollment_id=str(cancel.send.enrollment_id),
                step_index=cancel.send.step_index,
                reason=cancel.reason.value,
            )
        attempts = await asyncio.gather(*(self._deliver(s, r) for s, r in deliveries))
        await self._record(uow, deliveries, attempts, now=now)
        return len(claimed)

    async def cancel_orphans(self, uow: UnitOfWork[MessagingStore], *, now: datetime) -> int:
        """Cancel sends whose enrollment never arrived within the grace period."""
        orphans = await uow.store.cancel_orphans(
            created_before=now - self._orphan_grace, limit=self._batch_size
        )
        for send in orphans:
            uow.publish(messages.message_cancelled(domain.orphaned(send)))
            log.warning(
                "send_cancelled_enrollment_unknown",
                enrollment_id=str(send.enrollment_id),
                step_index=send.step_index,
                account_id=send.account_id,
            )
        self.stats.cancelled += len(orphans)
        return len(orphans)

    async def _deliver(self, send: domain.Send, recipient: str) -> domain.Attempt | None:
        """One provider call; None when the service began stopping before it started
        (the send stays pending, for this replica's successor or another one)."""
        email = messages.outbound_email(send, recipient)
        async with self._semaphore:
            if self._stopping():
                return None
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._providers[send.channel].send(email)
            except ProviderError as exc:
                return domain.Attempt(error=str(exc)[:2000], permanent=exc.permanent)
            except Exception as exc:  # noqa: BLE001 - any provider failure is an attempt
                return domain.Attempt(error=repr(exc)[:2000])
        return domain.Attempt(accepted_at=self._clock())

    async def _record(
        self,
        uow: UnitOfWork[MessagingStore],
        deliveries: Sequence[tuple[domain.Send, str]],
        attempts: Sequence[domain.Attempt | None],
        *,
        now: datetime,
    ) -> None:
        sent: list[domain.Sent] = []
        failures: list[domain.Failed] = []
        for (send, recipient), attempt in zip(deliveries, attempts, strict=True):
            if attempt is None:
                continue  # not attempted: still pending
            outcome = domain.after_attempt(send, recipient, attempt, now=now, policy=self._retry)
            context = {
                "enrollment_id": str(send.enrollment_id),
                "step_index": send.step_index,
                "account_id": send.account_id,
                "provider_message_id": send.provider_message_id,
            }
            if isinstance(outcome, domain.Sent):
                sent.append(outcome)
                uow.publish(messages.message_sent(outcome))
                log.info("message_sent", channel=send.channel.value, **context)
                continue
            failures.append(outcome)
            if outcome.retry_at is not None:
                self.stats.retried += 1
                log.warning(
                    "send_attempt_failed",
                    attempt=outcome.attempts,
                    retry_at=outcome.retry_at.isoformat(),
                    error=outcome.error,
                    **context,
                )
            else:
                self.stats.failed += 1
                # No message.failed contract exists yet: the log line is the only signal,
                # and the enrollment stays at this step until someone acts on it.
                log.error(
                    "send_failed_permanently",
                    attempts=outcome.attempts,
                    error=outcome.error,
                    **context,
                )
        await uow.store.mark_sent(sent)
        await uow.store.record_failures(failures)
        self.stats.sent += len(sent)


class SenderLoop:
    """Sends due steps as soon as they are queued (NOTIFY) or every poll (supervised)."""

    def __init__(self, runtime: ServiceRuntime[MessagingSettings, MessagingStore]) -> None:
        self._runtime = runtime
        self._sender = Sender.from_settings(
            runtime.settings, clock=runtime.clock, stopping=runtime.stopping.is_set
        )

    @property
    def stats(self) -> SenderStats:
        return self._sender.stats

    async def send_once(self, *, now: datetime) -> int:
        """One transaction of claimed sends; returns how many were claimed."""
        async with self._runtime.begin() as uow:
            return await self._sender.process(uow, now=now)

    async def cancel_orphans_once(self, *, now: datetime) -> int:
        """One transaction cancelling sends whose enrollment never arrived."""
        async with self._runtime.begin() as uow:
            return await self._sender.cancel_orphans(uow, now=now)

    async def run(self) -> None:
        settings = self._runtime.settings
        wakeup = Wakeup()
        listener = asyncio.create_task(
            listen(settings.database_url, wakeup, check_s=settings.send_poll_interval_s),
            name="messaging:sender-listen",
        )
        stopping = self._runtime.stopping
        # A stopping service wakes the sender at once; the round in hand commits first.
        stop_watch = asyncio.create_task(stopping.wait(), name="messaging:sender-stop")
        stop_watch.add_done_callback(lambda _task: wakeup.notify())
        next_orphan_check = 0.0
        try:
            while not stopping.is_set():
                now = self._runtime.clock()  # one reading per round
                try:
                    claimed = await self.send_once(now=now)
                    if time.monotonic() >= next_orphan_check:
                        await self.cancel_orphans_once(now=now)
                        next_orphan_check = time.monotonic() + settings.send_poll_interval_s * 10
                except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                    log.warning("sender_loop_error", error=repr(exc))
                    await wakeup.wait(settings.send_poll_interval_s)
                    continue
                self.stats.last_tick_monotonic = time.monotonic()
                if claimed < settings.send_batch_size:
                    await wakeup.wait(settings.send_poll_interval_s)
        finally:
            for task in (listener, stop_watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
