"""The sender: claims due sends in one short transaction, calls the providers outside any
transaction, and records each outcome in another short transaction.

1. **Claim** (transaction 1): lock due sends (SKIP LOCKED: replicas share the work) and
   share-lock their enrollments' projection rows; re-check each enrollment (an exit,
   pause, completion or revoked grant that messaging applied before the claim cancels the
   send, with ``message.cancelled``) and the grant's lease (lapsed: the send goes back to
   the queue until enrollment renews the grant, and ``message.deferred`` asks for that);
   hold back what a sender's send limit does not allow now (``limiting``: they stay
   pending, in due order); mark the others ``sending`` with a fresh attempt id and a
   lease (``claimed_until``); commit. A revoke or exit applied meanwhile waits for this
   commit only.
2. **Call** the provider, no transaction open, at most ``concurrency`` at once (a round
   claims no more, so every claimed call starts at once). Right before each call the
   grant's lease is checked again on the sender's clock: a call that could no longer
   start in time does not start (``stats.calls_not_started_lease_lapsed``), and the send
   is deferred as above.
3. **Record** (transaction 2): ``sent`` with ``message.sent``; a transient failure back to
   ``pending`` at its backoff time; a permanent refusal, or transient failures for longer
   than the retry budget, ``failed`` with ``message.failed``. Each applies only while the
   row still holds that attempt id, so an attempt that lost its lease changes nothing.

A send found ``sending`` past its lease was left by a crash (or a failed second commit):
the provider may or may not have accepted it. A provider that can tell
(``AcceptanceLookup``) is asked, and the send is marked sent without sending it again, or
sent if it was not accepted. One that cannot (SMTP) gets it again with the same
Message-ID; that re-send is counted (``stats.sends_resent_after_crash``) and logged
(``send_resent_after_crash``). A stopping service starts no provider call: the calls
under way finish and their outcome is recorded; the others go back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.messaging import balance, domain, limiting, messages
from services.messaging.config import MessagingSettings
from services.messaging.errors import ProviderError
from services.messaging.ports import MessagingStore
from services.messaging.provider_choice import build_providers
from services.messaging.providers import AcceptanceLookup, EmailProvider
from services.messaging.send_limits import NO_LIMITS, Limits
from services.messaging.sender_housekeeping import Housekeeping, SenderStats
from shared.contracts.inbound import Channel
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Begin = Callable[[], contextlib.AbstractAsyncContextManager[UnitOfWork[MessagingStore]]]
"""Opens one transaction with the store (``ServiceRuntime.begin``)."""

DEFAULT_RETRY = domain.RetryPolicy()

RECORD_PATIENCE = 4
"""How many leases long the outcome transaction is tried again (a database outage) before
its sends are left to be resolved as a crash's: until then they go out once. A late record
is still right: it applies only if no other sender took the send over meanwhile."""
RECORD_PAUSE_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class _Call:
    """One claimed send to carry out outside any transaction."""

    send: domain.Send
    """With the attempt id it was claimed under."""
    decision: domain.Deliver | domain.Cancel | domain.Defer
    recipient: str | None
    after_crash: bool
    lookup: AcceptanceLookup | None
    """Set when the send must first be looked up (a crash's send, a provider that can tell)."""
    short: bool = False
    """An SMS its account's balance cannot cover (set to fail when short): no call."""


Outcome = domain.Sent | domain.Failed | domain.Cancelled | domain.Deferred | domain.Released


def _delivers(item: domain.ClaimedSend, now: datetime) -> bool:
    return isinstance(domain.decide_send(item, now=now), domain.Deliver)


def _fields(send: domain.Send) -> dict[str, object]:
    return {
        "enrollment_id": str(send.enrollment_id),
        "step_index": send.step_index,
        "account_id": send.account_id,
        "provider_message_id": send.provider_message_id,
        "dispatch_id": str(send.dispatch_id) if send.dispatch_id else None,
    }


class Sender(Housekeeping):
    """Claims, sends and records; storage comes through the units of work it opens."""

    def __init__(
        self,
        providers: Mapping[Channel, EmailProvider],
        *,
        clock: Callable[[], datetime],
        batch_size: int = 100,
        concurrency: int = 32,
        timeout_s: float = 10.0,
        retry: domain.RetryPolicy = DEFAULT_RETRY,
        orphan_grace_s: float = 300.0,
        park_max_s: float = 3600.0,
        stopping: Callable[[], bool] = lambda: False,
        limits: Limits = NO_LIMITS,
    ) -> None:
        """``clock`` stamps the moment a provider accepts a message (``sent_at``); once
        ``stopping`` says so, no provider call starts (those under way finish)."""
        self._providers = providers
        self._clock = clock
        self.claim_limit = min(batch_size, concurrency)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout_s = timeout_s
        self.lease = timedelta(seconds=2 * timeout_s + 30)
        """How long a claim holds a send: a round's calls run at once, each bounded by
        ``timeout_s``, and its outcome is recorded right after."""
        self._retry = retry
        self._orphan_grace = timedelta(seconds=orphan_grace_s)
        self._park_max_s = park_max_s
        self._stopping = stopping
        self.limits = limits
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
            retry=domain.RetryPolicy(
                budget_s=settings.send_retry_budget_s,
                backoff_s=settings.send_retry_backoff_s,
                backoff_max_s=settings.send_retry_backoff_max_s,
            ),
            orphan_grace_s=settings.send_orphan_grace_s,
            park_max_s=settings.park_max_s,
            limits=Limits.from_settings(settings.send_limit_per_day, settings.send_limits),
        )

    async def process(self, begin: Begin, *, now: datetime) -> int:
        """One round: claim, call, record; returns how many sends were claimed."""
        async with begin() as uow:
            claimed = await uow.store.claim_due(now=now, limit=self.claim_limit)
            calls = await self._claim(uow, claimed, now=now)
        if calls:
            # No transaction is open here: the provider calls hold no lock and no connection.
            outcomes = await asyncio.gather(*(self._carry_out(call, now=now) for call in calls))
            await self._record(begin, outcomes, now=now)
        return len(claimed)

    async def _claim(
        self,
        uow: UnitOfWork[MessagingStore],
        claimed: Sequence[domain.ClaimedSend],
        *,
        now: datetime,
    ) -> list[_Call]:
        """Cancel what the re-check stops, defer what its lapsed grant no longer allows,
        hand the rest to a new attempt (in the claim's transaction)."""
        cancelled: list[domain.Cancelled] = []
        deferred: list[domain.Deferred] = []
        calls: list[_Call] = []
        short: list[_Call] = []
        covered, failing = await balance.reserve_claimed(
            uow,
            [i.send for i in claimed if i.unreserved and _delivers(i, now)],
            now,
        )
        for item in claimed:
            decision = domain.decide_send(item, now=now)
            if item.unreserved and isinstance(decision, domain.Deliver):
                if item.send.key in failing:
                    attempt = replace(item.send, attempt_id=uuid.uuid4())
                    short.append(_Call(attempt, decision, None, False, None, short=True))
                if item.send.key not in covered:
                    continue  # short: stays pending; a credit reserves it
            # A crash's send that the provider can look up is looked up first, even one the
            # re-check would cancel: whether it went out before the crash is a fact to keep.
            lookup = self._lookup(item)
            if lookup is None and isinstance(decision, domain.Cancel):
                cancelled.append(domain.cancelled(item, decision))
                continue
            if lookup is None and isinstance(decision, domain.Defer):
                deferred.append(domain.Deferred(item.send, decision, now, item.after_crash))
                continue
            attempt = replace(item.send, attempt_id=uuid.uuid4())
            calls.append(
                _Call(attempt, decision, domain.recipient_of(item), item.after_crash, lookup)
            )
        waiting = await limiting.hold_to_limits(
            uow,
            [(c.send, c.after_crash) for c in calls],
            claimed,
            self.limits,
            now=now,
            lapsed=[d.send for d in deferred if not d.after_crash],
        )
        self.stats.waited_for_limit += len(waiting)
        calls = [call for call in calls if call.send.key not in waiting] + short
        deferred = [d for d in deferred if d.send.key not in waiting]
        recorded = await uow.store.mark_cancelled(cancelled)
        self._publish_cancelled(uow, cancelled, recorded)
        stopped = [c.send for c in cancelled if c.send.key in recorded]
        await balance.settle_outcomes(uow, now=now, cancelled=stopped)
        self._publish_deferred(uow, deferred, await uow.store.defer(deferred, now=now))
        await uow.store.mark_sending([call.send for call in calls], until=now + self.lease)
        return calls

    def _lookup(self, item: domain.ClaimedSend) -> AcceptanceLookup | None:
        provider = self._providers[item.send.channel]
        if item.after_crash and isinstance(provider, AcceptanceLookup):
            return provider
        return None

    async def _carry_out(self, call: _Call, *, now: datetime) -> Outcome:  # noqa: PLR0911
        """One provider call (or look-up); a ``Released`` when none could start."""
        send = call.send
        async with self._semaphore:
            if self._stopping():
                return domain.Released(send, call.after_crash)
            if call.short:
                return balance.balance_exhausted(send, now)
            if call.lookup is not None:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        accepted = await call.lookup.already_accepted(send.provider_message_id)
                except Exception as exc:  # noqa: BLE001 - unknown: resolved again later
                    log.warning("send_lookup_failed", error=repr(exc), **_fields(send))
                    return domain.Released(send, after_crash=True)
                if accepted:
                    self.stats.sends_resolved_after_crash += 1
                    log.info("send_found_accepted_after_crash", **_fields(send))
                    return domain.Sent(send, call.recipient or "unknown", self._clock())
            if not isinstance(call.decision, domain.Deliver):
                return self._not_called(call, call.decision, now=now)
            at = self._clock()
            lapsed = domain.lapsed_grant(send, at)
            if lapsed is not None:
                return self._not_called(call, lapsed, now=at)
            if call.after_crash and call.lookup is None:
                self.stats.sends_resent_after_crash += 1
                log.warning("send_resent_after_crash", **_fields(send))
            attempt = await self._call(send, call.decision.recipient)
        return domain.after_attempt(
            send, call.decision.recipient, attempt, now=now, policy=self._retry
        )

    def _not_called(
        self, call: _Call, decision: domain.Cancel | domain.Defer, *, now: datetime
    ) -> domain.Cancelled | domain.Deferred:
        """What a claimed send comes to when no provider call starts for it."""
        if isinstance(decision, domain.Cancel):
            return domain.Cancelled(call.send, decision.reason)
        if isinstance(call.decision, domain.Deliver):
            # The last moment to start this call under its grant passed since the claim
            # (a slow claim, a full semaphore, a look-up): it must not start.
            self.stats.calls_not_started_lease_lapsed += 1
            log.warning("send_not_started_lease_lapsed", **_fields(call.send))
        return domain.Deferred(call.send, decision, now, call.after_crash)

    async def _call(self, send: domain.Send, recipient: str) -> domain.Attempt:
        email = messages.outbound_email(send, recipient)
        try:
            async with asyncio.timeout(self._timeout_s):
                reference = await self._providers[send.channel].send(email)
        except ProviderError as exc:
            return domain.Attempt(
                error=str(exc)[:2000], failure=exc.failure, retry_after_s=exc.retry_after_s
            )
        except Exception as exc:  # noqa: BLE001 - any other provider failure is transient
            return domain.Attempt(error=repr(exc)[:2000])
        return domain.Attempt(accepted_at=self._clock(), provider_reference=reference)

    async def _record(self, begin: Begin, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """The outcome transaction, tried again on a database error for ``RECORD_PATIENCE``
        leases: a send whose outcome is never recorded is resolved after its lease as a
        crash's (and, over SMTP, goes out twice)."""
        give_up_at = time.monotonic() + RECORD_PATIENCE * self.lease.total_seconds()
        pause, attempt = 0.25, 0
        while True:
            attempt += 1
            try:
                async with begin() as uow:
                    await self._apply(uow, outcomes, now=now)
            except Exception as exc:
                if time.monotonic() + pause > give_up_at:
                    raise
                log.warning("send_outcomes_not_recorded", attempt=attempt, error=repr(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECORD_PAUSE_MAX_S)
            else:
                return

    async def _apply(
        self, uow: UnitOfWork[MessagingStore], outcomes: Sequence[Outcome], *, now: datetime
    ) -> None:
        sent = [o for o in outcomes if isinstance(o, domain.Sent)]
        failures = [o for o in outcomes if isinstance(o, domain.Failed)]
        cancelled = [o for o in outcomes if isinstance(o, domain.Cancelled)]
        released = [o for o in outcomes if isinstance(o, domain.Released)]
        recorded = await uow.store.mark_sent(sent)
        for item in sent:
            if self._fresh(item.send, recorded):
                self.stats.sent += 1
                uow.publish(messages.message_sent(item))
                log.info("message_sent", channel=item.send.channel.value, **_fields(item.send))
        debited = [o.send for o in sent if o.send.key in recorded]
        recorded = await uow.store.record_failures(failures)
        for failure in failures:
            if self._fresh(failure.send, recorded):
                self._failed(uow, failure)
        ended = [o.send for o in failures if o.send.key in recorded and o.retry_at is None]
        recorded = await uow.store.mark_cancelled(cancelled)
        self._publish_cancelled(uow, cancelled, recorded)
        stopped = [o.send for o in cancelled if o.send.key in recorded]
        await balance.settle_outcomes(uow, now=now, sent=debited, failed=ended, cancelled=stopped)
        deferred = [o for o in outcomes if isinstance(o, domain.Deferred)]
        self._publish_deferred(uow, deferred, await uow.store.defer(deferred, now=now))
        await uow.store.release(released, now=now)
        unstarted = [o.send for o in released]
        unstarted += [o.send for o in deferred] + [o.send for o in cancelled]
        await limiting.give_back(uow, unstarted, self.limits)

    def _fresh(self, send: domain.Send, recorded: set[domain.SendKey]) -> bool:
        if send.key in recorded:
            return True
        self.stats.stale_outcomes += 1
        log.warning("send_outcome_stale", attempt_id=str(send.attempt_id), **_fields(send))
        return False

    def _failed(self, uow: UnitOfWork[MessagingStore], failure: domain.Failed) -> None:
        fields = _fields(failure.send)
        if failure.retry_at is not None:
            self.stats.retried += 1
            log.warning(
                "send_attempt_failed",
                attempt=failure.attempts,
                retry_at=failure.retry_at.isoformat(),
                error=failure.error,
                **fields,
            )
            return
        self.stats.failed += 1
        uow.publish(messages.message_failed(failure))
        log.error(
            "send_failed",
            kind=failure.kind.value if failure.kind else None,
            attempts=failure.attempts,
            error=failure.error,
            **fields,
        )

    def _publish_cancelled(
        self,
        uow: UnitOfWork[MessagingStore],
        cancelled: Sequence[domain.Cancelled],
        recorded: set[domain.SendKey],
    ) -> None:
        for cancel in cancelled:
            if not self._fresh(cancel.send, recorded):
                continue
            self.stats.cancelled += 1
            uow.publish(messages.message_cancelled(cancel))
            log.info("send_cancelled", reason=cancel.reason.value, **_fields(cancel.send))

    def _publish_deferred(
        self,
        uow: UnitOfWork[MessagingStore],
        deferred: Sequence[domain.Deferred],
        asked: set[domain.SendKey],
    ) -> None:
        for item in deferred:
            if item.send.key not in asked:
                # Renewed meanwhile (it is claimable again), or taken over: nothing to ask.
                log.info("send_deferral_not_needed", **_fields(item.send))
                continue
            self.stats.deferred += 1
            uow.publish(messages.message_deferred(item))
            lease = item.grant.lease_until.isoformat()
            log.warning("send_deferred_lease_lapsed", lease_until=lease, **_fields(item.send))

    async def close(self) -> None:
        """Close the providers' pooled connections (a later call opens new ones)."""
        for provider in {id(p): p for p in self._providers.values()}.values():
            close = getattr(provider, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception as exc:  # noqa: BLE001 - closing is best effort
                    log.warning("provider_close_failed", error=repr(exc))
