"""The sender's side of send limits (``send_limits``): in the claim's transaction, lock the
quota rows of the senders its calls use, let through what their capacity allows, in due
order, count it, and say which claimed sends wait."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.messaging.domain import ClaimedSend, Send, SendKey
from services.messaging.ports import MessagingStore
from services.messaging.send_limits import Candidate, Limits, SenderKey, allot
from shared.uow import UnitOfWork


def _sender(send: Send) -> SenderKey:
    return (send.account_id, send.sender)


async def hold_to_limits(
    uow: UnitOfWork[MessagingStore],
    calls: Sequence[tuple[Send, bool]],
    claimed: Sequence[ClaimedSend],
    limits: Limits,
    *,
    now: datetime,
    lapsed: Sequence[Send] = (),
) -> set[SendKey]:
    """The keys of ``calls`` (each claimed send about to be handed to a provider, and
    whether it is a crash's) that must wait for their sender's capacity; the others are
    counted against it. ``claimed`` is everything the claim holds (none of it is another
    replica's older send). A crash's send was counted when it was first claimed. ``lapsed``
    are claimed sends whose grant lapsed: the keys returned include those that must not
    ask for a renewal yet (their sender has no capacity for them now). Costs no statement
    when no sender involved has a limit."""
    due = {item.send.key: item.due_at or now for item in claimed}
    limited = [
        send
        for send, after_crash in calls
        if not after_crash and send.attempt_id is not None and limits.of(_sender(send))
    ]
    late = [send for send in lapsed if limits.of(_sender(send))]
    if not limited and not late:
        return set()
    usage = await uow.store.lock_senders(
        {_sender(send) for send in (*limited, *late)}, claimed=set(due), now=now
    )
    candidates = [Candidate(s.key, _sender(s), due.get(s.key, now)) for s in limited]
    candidates += [Candidate(s.key, _sender(s), due.get(s.key, now), lapsed=True) for s in late]
    allotment = allot(candidates, usage, limits, now=now)
    waiting: set[SendKey] = {key for key in allotment.wait if isinstance(key, tuple)}
    await uow.store.use_capacity(
        [(_sender(s), s.attempt_id) for s in limited if s.key not in waiting and s.attempt_id],
        allotment.blocked_until,
        now=now,
    )
    return waiting


async def give_back(
    uow: UnitOfWork[MessagingStore], unstarted: Sequence[Send], limits: Limits
) -> None:
    """Uncount claimed sends whose provider call never started (released, deferred,
    cancelled before the call): their senders' capacity is free again."""
    if not limits.any:
        return
    await uow.store.give_back_capacity(
        [(_sender(send), send.attempt_id) for send in unstarted if send.attempt_id is not None]
    )
