"""The handler harness catches a handler that applies a batch differently from its messages
one by one, and applies rejections the way the pipeline does."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.consumer import RejectedMessageError
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import Enroll, EnrollPayload
from shared.uow import UnitOfWork
from tests.support.harness import Harness

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Counts:
    seen: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> object:
        return dict(self.seen)


def enroll(record_id: str, workflow_id: str = "wf") -> Enroll:
    payload = EnrollPayload(
        workflow_id=workflow_id,
        record=RecordRef(type=RecordType.CONTACT, id=record_id),
        actor=Actor(kind=ActorKind.API, id="t"),
    )
    return Enroll.create(account_id="acc", payload=payload)


async def count_each(uow: UnitOfWork[Counts], commands: list[Enroll], now: datetime) -> None:
    for command in commands:
        if command.payload.workflow_id == "refused":
            raise RejectedMessageError("refused")
        record = command.payload.record.id
        uow.store.seen[record] = uow.store.seen.get(record, 0) + 1


async def count_from_a_stale_load(
    uow: UnitOfWork[Counts], commands: list[Enroll], now: datetime
) -> None:
    loaded = dict(uow.store.seen)  # read once, then each message overwrites from it
    for command in commands:
        record = command.payload.record.id
        uow.store.seen[record] = loaded.get(record, 0) + 1


def harness(handler: Any) -> Harness[Counts]:
    return Harness({Enroll.TYPE: handler}, Counts, now=NOW)


async def test_a_handler_that_applies_a_batch_as_its_messages_passes() -> None:
    h = harness(count_each)
    await h.when(enroll("a"), enroll("a"), enroll("b"))
    assert h.store.seen == {"a": 2, "b": 1}


async def test_a_handler_whose_batch_differs_from_its_messages_one_by_one_fails() -> None:
    h = harness(count_from_a_stale_load)
    with pytest.raises(AssertionError, match="different states"):
        await h.when(enroll("a"), enroll("a"))


async def test_a_rejection_undoes_only_its_own_message_as_in_the_pipeline() -> None:
    h = harness(count_each)
    refused = enroll("c", workflow_id="refused")
    outcome = await h.when(enroll("a"), refused, enroll("b"))
    assert h.store.seen == {"a": 1, "b": 1}
    assert outcome.rejected == [(refused, "refused")]
