"""messaging's handlers and sender on the harness, over the fake store, with fake providers."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.messaging.config import MessagingSettings
from services.messaging.domain import RetryPolicy
from services.messaging.errors import ProviderError
from services.messaging.handlers import build_handlers
from services.messaging.ports import MessagingStore
from services.messaging.projection import EnrollmentView
from services.messaging.providers import OutboundEmail
from services.messaging.sender import Begin, Sender
from shared.contracts import TOPIC_OF_TYPE, Message
from shared.contracts.events import FailureKind
from shared.contracts.inbound import Channel
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_events import ACCOUNT, T0
from tests.support.builders.messaging_events import (
    ENROLLMENT,
    messaging_settings,
    workflow_applied,
)
from tests.support.fakes.messaging import FakeMessagingStore, ParkedRow, SendRow
from tests.support.harness import Harness, published_by


class Crash(BaseException):
    """The process died here: nothing after it runs (what ``kill -9`` does to a sender)."""


@dataclass
class FakeProvider:
    """Accepts every message, or fails the first ``failures`` calls (transiently), or
    refuses for good (``refusal``), or accepts and then dies (``crash``), or dies before
    the message reached it (``crash_before_accepting``)."""

    failures: int = 0
    refuse: bool = False
    refusal: FailureKind = FailureKind.HARD_BOUNCE
    crash: bool = False
    crash_before_accepting: bool = False
    accepted: list[OutboundEmail] = field(default_factory=list)
    calls: int = 0
    reference: str | None = None
    """The provider's own id it answers with (an HTTP API's)."""

    async def send(self, email: OutboundEmail) -> str | None:
        if self.crash_before_accepting:
            self.crash_before_accepting = False
            raise Crash
        self.calls += 1
        if self.refuse:
            reason = "550 5.1.1 no such user" if self.refusal is FailureKind.HARD_BOUNCE else "554"
            raise ProviderError(reason, failure=self.refusal)
        if self.calls <= self.failures:
            raise ConnectionRefusedError(f"relay unreachable ({self.calls})")
        self.accepted.append(email)
        if self.crash:
            self.crash = False
            raise Crash
        return self.reference


@dataclass
class LookupProvider(FakeProvider):
    """A provider that can tell whether it accepted a message (an API with idempotency
    keys), which an SMTP relay cannot."""

    lookups: int = 0
    lookup_fails: bool = False

    async def already_accepted(self, message_id: str) -> bool:
        self.lookups += 1
        if self.lookup_fails:
            raise ConnectionResetError("look-up unavailable")
        return any(email.message_id == message_id for email in self.accepted)


SenderRound = Callable[[Begin], Awaitable[int]]


class MessagingHarness(Harness[FakeMessagingStore]):
    """Messaging's handlers on the harness, and its sender on the same fake store.

    A sender round is not a consumer case: it runs once, on the store the batches went to,
    and the store that takes messages one by one goes on from where it left.
    """

    def __init__(
        self,
        settings: MessagingSettings,
        *,
        now: datetime,
        retry: RetryPolicy,
        email: FakeProvider | None = None,
    ) -> None:
        super().__init__(build_handlers(settings), FakeMessagingStore, now=now)
        self.email = email or FakeProvider()
        self.sms, self.chat = FakeProvider(), FakeProvider()
        self._round_now = now
        self._calls_at: datetime | None = None
        self.sender = Sender(
            {Channel.EMAIL: self.email, Channel.SMS: self.sms, Channel.CHAT: self.chat},
            clock=lambda: self._calls_at or self._round_now,
            retry=retry,
            park_max_s=settings.park_max_s,
            timeout_s=settings.send_timeout_s,
        )
        self.topics: list[str] = []
        """The topic of every message the sender published, in order."""

    async def ready(self, *events: Message) -> None:
        """``workflow_applied()`` and then ``events`` happened before the case."""
        await self.given(workflow_applied(), *events)

    async def send_due(
        self, *, now: datetime | None = None, calls_at: datetime | None = None
    ) -> list[Message]:
        """One sender round (claim, calls, record) at ``now``: what it publishes. The
        sender's clock reads ``calls_at`` (default ``now``) once the claim has committed:
        a round whose calls come later than its claim."""
        at = now or self.now
        self._calls_at = calls_at
        try:
            _, published = await self._round(lambda begin: self.sender.process(begin, now=at), at)
        finally:
            self._calls_at = None
        return published

    async def crash_while_sending(self, *, now: datetime | None = None) -> list[Message]:
        """A sender round whose process dies in a provider call: what it had published
        (its claim committed; nothing after the call runs)."""
        published: list[Message] = []
        try:
            await self._round(
                lambda begin: self.sender.process(begin, now=now or self.now),
                now or self.now,
                published,
            )
        except Crash:
            self._alone = copy.deepcopy(self.store)
            return published
        raise AssertionError("the provider did not crash")

    async def cancel_orphans(self, *, now: datetime) -> tuple[int, list[Message]]:
        """One transaction cancelling orphans at ``now``: how many, and what it publishes."""
        return await self._round(
            lambda begin: self._once(begin, self.sender.cancel_orphans, now), now
        )

    async def expire_parked(self, *, now: datetime) -> tuple[int, list[Message]]:
        """One transaction failing expired parked steps at ``now``."""
        return await self._round(
            lambda begin: self._once(begin, self.sender.expire_parked, now), now
        )

    @staticmethod
    async def _once(
        begin: Begin,
        work: Callable[..., Awaitable[int]],
        now: datetime,
    ) -> int:
        async with begin() as uow:
            return await work(uow, now=now)

    async def _round(
        self, work: SenderRound, now: datetime, published: list[Message] | None = None
    ) -> tuple[int, list[Message]]:
        self._round_now = now
        published = [] if published is None else published

        @contextlib.asynccontextmanager
        async def begin() -> AsyncIterator[UnitOfWork[MessagingStore]]:
            uow: UnitOfWork[MessagingStore] = UnitOfWork(None, self.store)
            yield uow
            published.extend(published_by(uow))  # at commit only

        count, _ = await self.step(lambda _uow: work(begin))
        self.topics.extend(TOPIC_OF_TYPE[m.type] for m in published)
        return count, published

    def row(
        self, step_index: int = 0, enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT
    ) -> SendRow:
        return self.store.sends[(account, enrollment_id, step_index)]

    def parked(
        self, step_index: int = 0, enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT
    ) -> ParkedRow:
        return self.store.parked[(account, enrollment_id, step_index)]

    def view(self, enrollment_id: uuid.UUID = ENROLLMENT, account: str = ACCOUNT) -> EnrollmentView:
        return self.store.enrollments[(account, enrollment_id)]


RETRY = RetryPolicy(budget_s=60.0, backoff_s=2.0, backoff_max_s=20.0)
"""The handler tests' retry policy: 2 s doubling to 20 s, for a minute."""


def messaging_harness(email: FakeProvider | None = None) -> MessagingHarness:
    """The handler tests' harness: at ``T0``, ``RETRY``, the default park time (1 h)."""
    return MessagingHarness(messaging_settings(), now=T0, retry=RETRY, email=email)
