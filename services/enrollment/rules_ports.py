"""What the enrollment rules need from storage (the account's exclusivity setting and a
per-record lock). ``EnrollmentStore`` includes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from shared.contracts import RecordRef
from shared.contracts.commands import Enroll
from shared.contracts.enrollment_rules import Exclusivity

RecordKey = tuple[str, RecordRef]
WorkflowKey = tuple[str, str]


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

    async def enrolled_since(
        self, keys: Sequence[tuple[str, str, datetime]]
    ) -> dict[WorkflowKey, int]:
        """How many enrollments each (account, workflow) started at or after the time."""
        ...

    async def waiting_for_cap(self, keys: Sequence[WorkflowKey]) -> set[WorkflowKey]:
        """The workflows some enroll is waiting for the daily cap of."""
        ...

    async def take_released(self, *, now: datetime, limit: int) -> list[tuple[Enroll, datetime]]:
        """Remove and return up to ``limit`` enrolls waiting for the cap whose release time
        passed, with when each first arrived, in arrival order; replicas skip each
        other's rows."""
        ...
