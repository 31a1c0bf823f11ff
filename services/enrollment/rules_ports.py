"""What the enrollment rules need from storage (the account's exclusivity setting and a
per-record lock). ``EnrollmentStore`` includes it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.contracts import RecordRef
from shared.contracts.enrollment_rules import Exclusivity

RecordKey = tuple[str, RecordRef]


class RulesStore(Protocol):
    async def account_exclusivity(self, account_ids: Sequence[str]) -> dict[str, Exclusivity]:
        """Each account's exclusivity setting (``no_limit`` when it set none)."""
        ...

    async def set_account_exclusivity(self, account_id: str, exclusivity: Exclusivity) -> None:
        """Save the account's setting (the last one wins)."""
        ...

    async def lock_records(self, keys: Sequence[RecordKey]) -> None:
        """Hold a lock per (account, record) until commit, across workflows: two runs
        enrolling one record (in any workflows) decide one after the other, and a
        statement after the lock sees what the other committed."""
        ...
