"""One handler harness for the four services.

It applies messages to a service's handlers the way the pipeline does: consecutive
messages of one handler form a run (``shared.consumer.runs_of``), every run of a batch
shares one unit of work and one clock reading, and a batch that fails is applied again
message by message, where a ``RejectedMessageError`` undoes only its own message.

Every case runs twice, on two fakes built alike: once as one batch and once message by
message. ``when`` asserts both end in the same state and publish the same messages: the
rule every batch-native handler must keep.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from shared.consumer import Handler, RejectedMessageError, runs_of
from shared.contracts import TOPIC_OF_TYPE, Message, decode
from shared.uow import UnitOfWork


class FakeStore(Protocol):
    def snapshot(self) -> object:
        """Everything the store holds, comparable with ``==`` (call logs left out)."""
        ...


StoreT = TypeVar("StoreT", bound=FakeStore)
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What one batch did: the messages it published and the ones it rejected."""

    published: list[Message] = field(default_factory=list)
    rejected: list[tuple[Message, str]] = field(default_factory=list)

    def of_type(self, model: type[Any]) -> list[Any]:
        return [m for m in self.published if isinstance(m, model)]


def published_by(uow: UnitOfWork[Any]) -> list[Message]:
    """What ``uow`` would publish, decoded back through the contracts; every record must
    go to its type's topic, keyed by its record, with the envelope in its headers."""
    published = []
    for out in uow.outgoing:
        message = decode(out.value, topic=out.topic)
        assert isinstance(message, Message), f"{out.topic}: {message!r} is not a known message"
        assert out.topic == TOPIC_OF_TYPE[message.type]
        assert out.key == message.partition_key()
        assert out.headers["message-id"] == str(message.message_id)
        assert out.headers["message-type"] == message.type
        assert out.headers["account-id"] == message.account_id
        published.append(message)
    return published


def _comparable(messages: Sequence[Message]) -> list[dict[str, Any]]:
    # When a message was created is the wall clock's business, not the handler's.
    return [m.model_dump(mode="json", exclude={"occurred_at"}) for m in messages]


async def apply_batch(
    handlers: Mapping[str, Handler], store: Any, messages: Sequence[Message], now: datetime
) -> tuple[Outcome, Any]:
    """Apply ``messages`` as one pipeline batch on ``store``; returns the outcome and the
    store as it ends (a copy, if the batch had to be applied message by message)."""
    trial = copy.deepcopy(store)
    uow = UnitOfWork(None, trial)
    try:
        for handler, run in runs_of(handlers, messages):
            await handler(uow, run, now)
    except RejectedMessageError:
        pass  # the pipeline rolls the batch back and applies it message by message
    else:
        return Outcome(published_by(uow)), trial
    published: list[Message] = []
    rejected: list[tuple[Message, str]] = []
    for message in messages:
        outcome, store = await apply_alone(handlers, store, message, now)
        published += outcome.published
        rejected += outcome.rejected
    return Outcome(published, rejected), store


async def apply_alone(
    handlers: Mapping[str, Handler], store: Any, message: Message, now: datetime
) -> tuple[Outcome, Any]:
    trial = copy.deepcopy(store)
    uow = UnitOfWork(None, trial)
    try:
        await handlers[message.type](uow, [message], now)
    except RejectedMessageError as exc:
        return Outcome(rejected=[(message, exc.reason)]), store
    return Outcome(published_by(uow)), trial


class Harness(Generic[StoreT]):
    """A service's handlers over its fake store, checked both ways at every step."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        new_store: Callable[[], StoreT],
        *,
        now: datetime,
    ) -> None:
        self.handlers = handlers
        self.store = new_store()
        self._alone = new_store()
        self.now = now

    async def step(self, work: Callable[[UnitOfWork[Any]], Awaitable[T]]) -> tuple[T, Outcome]:
        """Run work that is not a consumer case (a timer or sender round) once, on the
        store the batches went to; the one-by-one store goes on from the same state."""
        assert self.store.snapshot() == self._alone.snapshot()
        uow = UnitOfWork(None, self.store)
        result = await work(uow)
        self._alone = copy.deepcopy(self.store)
        return result, Outcome(published_by(uow))

    async def given(self, *messages: Message) -> None:
        """What happened before the case, the same for both stores."""
        _, self.store = await apply_batch(self.handlers, self.store, messages, self.now)
        _, self._alone = await apply_batch(self.handlers, self._alone, messages, self.now)

    async def when(self, *messages: Message) -> Outcome:
        """Apply ``messages`` as one batch, and message by message on the other store;
        both must end the same. Returns what the batch did."""
        batch, self.store = await apply_batch(self.handlers, self.store, messages, self.now)
        one_by_one = Outcome()
        for message in messages:
            alone, self._alone = await apply_alone(self.handlers, self._alone, message, self.now)
            one_by_one.published.extend(alone.published)
            one_by_one.rejected.extend(alone.rejected)
        assert self.store.snapshot() == self._alone.snapshot(), (
            "applying the batch at once and message by message ended in different states"
        )
        assert _comparable(batch.published) == _comparable(one_by_one.published), (
            "applying the batch at once and message by message published different messages"
        )
        assert [(m.message_id, r) for m, r in batch.rejected] == [
            (m.message_id, r) for m, r in one_by_one.rejected
        ]
        return batch
