"""The rules part of ``FakeEnrollmentStore`` (``RulesStore`` in memory, with the SQL's
semantics): the account's exclusivity setting and the records locked."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.enrollment.domain import Enrollment
from services.enrollment.ports import ParkedEnroll
from services.enrollment.rules_ports import RecordKey, WorkflowKey
from shared.contracts.commands import Enroll
from shared.contracts.enrollment_rules import Exclusivity


@dataclass
class RulesState:
    exclusivity: dict[str, Exclusivity] = field(default_factory=dict)
    locked_records: set[RecordKey] = field(default_factory=set)
    """Records ``lock_records`` was asked for (a lock in the SQL store)."""

    def snapshot(self) -> object:
        return dict(self.exclusivity)


class FakeRulesStore:
    """The ``RulesStore`` methods of ``FakeEnrollmentStore``, on its ``rules``."""

    rules: RulesState
    enrollments: dict[tuple[str, uuid.UUID], Enrollment]
    parked: dict[tuple[str, uuid.UUID], ParkedEnroll]
    calls: list[str]

    def _called(self, name: str, rows: Sequence[object]) -> None:
        raise NotImplementedError

    async def account_exclusivity(self, account_ids: Sequence[str]) -> dict[str, Exclusivity]:
        self._called("account_exclusivity", account_ids)
        return {a: self.rules.exclusivity.get(a, Exclusivity.NO_LIMIT) for a in set(account_ids)}

    async def set_account_exclusivity(self, account_id: str, exclusivity: Exclusivity) -> None:
        self._called("set_account_exclusivity", [account_id])
        self.rules.exclusivity[account_id] = exclusivity

    async def lock_records(self, keys: Sequence[RecordKey]) -> None:
        self._called("lock_records", keys)
        self.rules.locked_records.update(keys)

    async def enrolled_since(
        self, keys: Sequence[tuple[str, str, datetime]]
    ) -> dict[WorkflowKey, int]:
        self._called("enrolled_since", keys)
        return {
            (a, w): sum(
                1
                for e in self.enrollments.values()
                if (e.account_id, e.workflow_id) == (a, w) and e.enrolled_at >= since
            )
            for a, w, since in keys
        }

    async def waiting_for_cap(self, keys: Sequence[WorkflowKey]) -> set[WorkflowKey]:
        self._called("waiting_for_cap", keys)
        return {p.workflow for p in self.parked.values() if p.release_at is not None} & set(keys)

    async def take_released(self, *, now: datetime, limit: int) -> list[tuple[Enroll, datetime]]:
        self.calls.append("take_released")
        due = [
            (p.parked_at, n, k)
            for n, (k, p) in enumerate(self.parked.items())
            if p.release_at is not None and p.release_at <= now
        ]
        taken = [self.parked.pop(k) for _, _, k in sorted(due)[:limit]]
        return [(p.command, p.parked_at) for p in taken]
