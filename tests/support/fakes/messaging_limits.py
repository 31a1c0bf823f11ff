"""The send limits of ``FakeMessagingStore`` in memory, with the SQL's semantics
(``send_limits_sql``; no locking: the fake runs one transaction at a time)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from services.messaging.domain import SendKey
from services.messaging.send_limits import WINDOW, SenderKey, SenderQueue, SenderUsage

if TYPE_CHECKING:
    from tests.support.fakes.messaging import SendRow


class FakeSendLimits:
    """Quota rows (``blocked_until`` per sender) and the usage ledger."""

    sends: dict[SendKey, SendRow]
    quotas: dict[SenderKey, datetime | None]
    usage: dict[SenderKey, dict[uuid.UUID, datetime]]
    calls: list[str]

    def blocked(self, row: SendRow, now: datetime) -> bool:
        until = self.quotas.get((row.send.account_id, row.send.sender))
        return until is not None and until > now

    async def lock_senders(
        self, senders: Collection[SenderKey], *, claimed: Collection[SendKey], now: datetime
    ) -> dict[SenderKey, SenderUsage]:
        self.calls.append("lock_senders")
        out: dict[SenderKey, SenderUsage] = {}
        for sender in senders:
            self.quotas.setdefault(sender, None)
            used = self.usage.setdefault(sender, {})
            for attempt, at in list(used.items()):
                if at <= now - WINDOW:
                    del used[attempt]
            waiting = [
                row.next_attempt_at
                for key, row in self.sends.items()
                if (row.send.account_id, row.send.sender) == sender
                and row.status == "pending"
                and row.next_attempt_at <= now
                and not row.awaits_renewal(now)
                and key not in claimed
                and self._projected(key)
            ]
            out[sender] = SenderUsage(tuple(sorted(used.values())), min(waiting, default=None))
        return out

    def _projected(self, key: SendKey) -> bool:
        return key[:2] in self.enrollments  # type: ignore[attr-defined]

    async def use_capacity(
        self,
        used: Sequence[tuple[SenderKey, uuid.UUID]],
        blocked: Mapping[SenderKey, datetime],
        *,
        now: datetime,
    ) -> None:
        self.calls.append("use_capacity")
        for sender, attempt in used:
            self.usage.setdefault(sender, {}).setdefault(attempt, now)
        for sender, until in blocked.items():
            if sender in self.quotas:
                self.quotas[sender] = until

    async def give_back_capacity(self, attempts: Sequence[tuple[SenderKey, uuid.UUID]]) -> None:
        self.calls.append("give_back_capacity")
        for sender, attempt in attempts:
            if self.usage.get(sender, {}).pop(attempt, None) is not None:
                self.quotas[sender] = None

    async def sends_queue(self, *, now: datetime) -> list[SenderQueue]:
        senders: set[SenderKey] = {
            (row.send.account_id, row.send.sender)
            for row in self.sends.values()
            if row.status == "pending"
        }
        senders |= {
            s for s, used in self.usage.items() if any(at > now - WINDOW for at in used.values())
        }
        out = []
        for sender in sorted(senders):
            pending = [
                row
                for row in self.sends.values()
                if row.status == "pending" and (row.send.account_id, row.send.sender) == sender
            ]
            due = [row.next_attempt_at for row in pending if row.next_attempt_at <= now]
            until = self.quotas.get(sender)
            out.append(
                SenderQueue(
                    account_id=sender[0],
                    sender=sender[1],
                    waiting=len(pending),
                    due=len(due),
                    oldest_due_at=min(due, default=None),
                    used_24h=sum(at > now - WINDOW for at in self.usage.get(sender, {}).values()),
                    blocked_until=until if until is not None and until > now else None,
                )
            )
        return out
