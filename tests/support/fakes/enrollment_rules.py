"""The rules part of ``FakeEnrollmentStore`` (``RulesStore`` in memory, with the SQL's
semantics): the account's exclusivity setting and the records locked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.enrollment.rules_ports import RecordKey
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
