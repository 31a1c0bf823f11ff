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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from services.messaging import domain
from services.messaging.config import MessagingSettings
from services.messaging.errors import ProviderError
from services.messaging.ports import CancelledSend, FailedAttempt, SendQueue, SentSend
from services.messaging.providers import EmailProvider, OutboundEmail, build_providers
from services.messaging.repository import SENDS_CHANNEL, MessagingRepository
from shared.contracts import utc_now
from shared.contracts.events import (
    CancelReason,
    MessageCancelled,
    MessageCancelledPayload,
    MessageSent,
    MessageSentPayload,
)
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


M = TypeVar("M", MessageSent, MessageCancelled)


def _traced(message: M, send: domain.Send) -> M:
    # The send outlives the step.due that queued it; carry that flow's ids forward.
    return message.model_copy(
        update={"correlation_id": send.correlation_id, "causation_id": send.cause_message_id}
    )


def sent_message(send: domain.Send, *, recipient: str, sent_at: datetime) -> MessageSent:
    """``message.sent``; its id is derived, so a step sent twice publishes one id."""
    return _traced(
        MessageSent.create(
            message_id=domain.send_event_id(MessageSent.TYPE, send),
            account_id=send.account_id,
            occurred_at=sent_at,
            payload=MessageSentPayload(
                **send.step_ref(),
                channel=send.channel,
                provider_message_id=send.provider_message_id,
                recipient=recipient,
                sent_at=sent_at,
            ),
        ),
        send,
    )


def cancelled_message(send: domain.Send, *, reason: CancelReason) -> MessageCancelled:
    """``message.cancelled`` with the reason the send-time re-check found."""
    return _traced(
        MessageCancelled.create(
            message_id=domain.send_event_id(MessageCancelled.TYPE, send),
            account_id=send.account_id,
            payload=MessageCancelledPayload(
                **send.step_ref(),
                reason=reason,
            ),
        ),
        send,
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    sent_at: datetime | None = None
    error: str | None = None
    permanent: bool = False


class Sender:
    """Decides and performs the sends of one transaction; storage comes through the port."""

    def __init__(
        self,
        providers: Mapping[Channel, EmailProvider],
        *,
        batch_size: int = 100,
        concurrency: int = 32,
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        backoff_s: float = 2.0,
        backoff_max_s: float = 300.0,
        orphan_grace_s: float = 300.0,
    ) -> None:
        self._providers = providers
        self._batch_size = batch_size
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._orphan_grace = timedelta(seconds=orphan_grace_s)
        self.stats = SenderStats()

    @classmethod
    def from_settings(cls, settings: MessagingSettings) -> Sender:
        """A sender with the configured providers and limits."""
        return cls(
            build_providers(settings),
            batch_size=settings.send_batch_size,
            concurrency=settings.send_concurrency,
            timeout_s=settings.send_timeout_s,
            max_attempts=settings.send_max_attempts,
            backoff_s=settings.send_retry_backoff_s,
            backoff_max_s=settings.send_retry_backoff_max_s,
            orphan_grace_s=settings.send_orphan_grace_s,
        )

    async def process(self, queue: SendQueue, uow: UnitOfWork[Any], *, now: datetime) -> int:
        """Claim due sends, cancel or send each, record outcomes; returns how many claimed.

        Runs inside the caller's transaction, which must commit (with ``uow.outgoing``
        written to the outbox) only after this returns.
        """
        claimed = await queue.claim_due(now=now, limit=self._batch_size)
        cancelled: list[CancelledSend] = []
        deliveries: list[tuple[domain.Send, str]] = []
        for item in claimed:
            decision = domain.decide_send(item)
            if isinstance(decision, domain.Cancel):
                cancelled.append(CancelledSend(*item.send.key, decision.reason))
                uow.publish(cancelled_message(item.send, reason=decision.reason))
            else:
                deliveries.append((item.send, decision.recipient))
        await queue.mark_cancelled(cancelled)
        self.stats.cancelled += len(cancelled)
        for cancel in cancelled:
            log.info(
                "send_cancelled",
                enrollment_id=str(cancel.enrollment_id),
                step_index=cancel.step_index,
                reason=cancel.reason.value,
            )
        outcomes = await asyncio.gather(*(self._deliver(s, r) for s, r in deliveries))
        await self._record(queue, uow, deliveries, outcomes, now=now)
        return len(claimed)

    async def cancel_orphans(self, queue: SendQueue, uow: UnitOfWork[Any], *, now: datetime) -> int:
        """Cancel sends whose enrollment never arrived within the grace period."""
        orphans = await queue.cancel_orphans(
            created_before=now - self._orphan_grace, limit=self._batch_size
        )
        for send in orphans:
            uow.publish(cancelled_message(send, reason=CancelReason.NO_RECIPIENT))
            log.warning(
                "send_cancelled_enrollment_unknown",
                enrollment_id=str(send.enrollment_id),
                step_index=send.step_index,
                account_id=send.account_id,
            )
        self.stats.cancelled += len(orphans)
        return len(orphans)

    async def _deliver(self, send: domain.Send, recipient: str) -> _Outcome:
        email = OutboundEmail(
            message_id=send.provider_message_id,
            sender=send.sender,
            recipient=recipient,
            subject=send.subject,
            body=send.body,
        )
        async with self._semaphore:
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._providers[send.channel].send(email)
            except ProviderError as exc:
                return _Outcome(error=str(exc)[:2000], permanent=exc.permanent)
            except Exception as exc:  # noqa: BLE001 - any provider failure is an attempt
                return _Outcome(error=repr(exc)[:2000])
        return _Outcome(sent_at=utc_now())

    async def _record(
        self,
        queue: SendQueue,
        uow: UnitOfWork[Any],
        deliveries: Sequence[tuple[domain.Send, str]],
        outcomes: Sequence[_Outcome],
        *,
        now: datetime,
    ) -> None:
        sent: list[SentSend] = []
        failures: list[FailedAttempt] = []
        for (send, recipient), outcome in zip(deliveries, outcomes, strict=True):
            key = send.key
            context = {
                "enrollment_id": str(send.enrollment_id),
                "step_index": send.step_index,
                "account_id": send.account_id,
                "provider_message_id": send.provider_message_id,
            }
            if outcome.sent_at is not None:
                sent.append(SentSend(*key, recipient, outcome.sent_at))
                uow.publish(sent_message(send, recipient=recipient, sent_at=outcome.sent_at))
                log.info("message_sent", channel=send.channel.value, **context)
                continue
            error = outcome.error or "unknown error"
            next_step = domain.after_failure(
                attempts_before=send.attempts,
                max_attempts=self._max_attempts,
                now=now,
                backoff_s=self._backoff_s,
                backoff_max_s=self._backoff_max_s,
                permanent=outcome.permanent,
            )
            if isinstance(next_step, domain.RetryAt):
                failures.append(FailedAttempt(*key, error, next_step.at))
                self.stats.retried += 1
                log.warning(
                    "send_attempt_failed",
                    attempt=send.attempts + 1,
                    retry_at=next_step.at.isoformat(),
                    error=error,
                    **context,
                )
            else:
                failures.append(FailedAttempt(*key, error, None))
                self.stats.failed += 1
                # No message.failed contract exists yet: the log line is the only signal,
                # and the enrollment stays at this step until someone acts on it.
                log.error(
                    "send_failed_permanently",
                    attempts=next_step.attempts,
                    error=error,
                    **context,
                )
        await queue.mark_sent(sent)
        await queue.record_failures(failures)
        self.stats.sent += len(sent)


async def send_once(pool: asyncpg.Pool, sender: Sender, *, schema: str) -> int:
    """One transaction of claimed sends; returns how many were claimed."""
    del schema
    async with UnitOfWork.begin(pool, MessagingRepository) as uow:
        return await sender.process(uow.store, uow, now=utc_now())


async def cancel_orphans_once(pool: asyncpg.Pool, sender: Sender, *, schema: str) -> int:
    """One transaction cancelling sends whose enrollment never arrived."""
    del schema
    async with UnitOfWork.begin(pool, MessagingRepository) as uow:
        return await sender.cancel_orphans(uow.store, uow, now=utc_now())


@dataclass(slots=True)
class _Wakeup:
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self, *_args: object) -> None:
        self.event.set()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=timeout_s)
        self.event.clear()


async def _listen(dsn: str, wakeup: _Wakeup, *, check_s: float) -> None:
    # A dedicated connection: a pooled one would lose the LISTEN when handed back.
    while True:
        try:
            conn = await asyncpg.connect(
                dsn, server_settings={"application_name": "offramp-messaging-sender"}
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("sender_listen_connect_failed", error=repr(exc))
            await asyncio.sleep(check_s)
            continue
        try:
            await _listen_until_closed(conn, wakeup, check_s=check_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("sender_listen_failed", error=repr(exc))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=2))


async def _listen_until_closed(
    conn: asyncpg.Connection[asyncpg.Record], wakeup: _Wakeup, *, check_s: float
) -> None:
    closed = asyncio.Event()
    conn.add_termination_listener(lambda _conn: closed.set())
    await conn.add_listener(SENDS_CHANNEL, wakeup.notify)
    wakeup.notify()  # sends queued while nobody listened
    while not conn.is_closed():
        # The termination callback is the fast path; the periodic look is the safety net.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), timeout=check_s)
    log.warning("sender_listen_connection_lost")


class SenderLoop:
    """Sends due steps as soon as they are queued (NOTIFY) or every poll (supervised)."""

    def __init__(self, runtime: ServiceRuntime[MessagingSettings, Any]) -> None:
        self._runtime = runtime
        self._sender = Sender.from_settings(runtime.settings)

    @property
    def stats(self) -> object:
        return self._sender.stats

    async def run(self) -> None:
        await _send_until_stopped(self._runtime, self._sender)


async def _send_until_stopped(
    runtime: ServiceRuntime[MessagingSettings, Any], sender: Sender
) -> None:
    settings = runtime.settings
    schema = runtime.spec.schema
    wakeup = _Wakeup()
    listener = asyncio.create_task(
        _listen(settings.database_url, wakeup, check_s=settings.send_poll_interval_s),
        name="messaging:sender-listen",
    )
    next_orphan_check = 0.0
    try:
        while True:
            try:
                claimed = await send_once(runtime.pool, sender, schema=schema)
                if time.monotonic() >= next_orphan_check:
                    await cancel_orphans_once(runtime.pool, sender, schema=schema)
                    next_orphan_check = time.monotonic() + settings.send_poll_interval_s * 10
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.warning("sender_loop_error", error=repr(exc))
                await asyncio.sleep(settings.send_poll_interval_s)
                continue
            sender.stats.last_tick_monotonic = time.monotonic()
            if claimed < settings.send_batch_size:
                await wakeup.wait(settings.send_poll_interval_s)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
