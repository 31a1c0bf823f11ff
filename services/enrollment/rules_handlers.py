"""Enrollment subscribers of the account's enrollment rules: ``account.set_exclusivity``
(answered by ``account.exclusivity_set``). The rule itself is decided at admission
(``exclusivity``, ``admission``)."""

from __future__ import annotations

from datetime import datetime

from services.enrollment import exclusivity
from services.enrollment.ports import EnrollmentStore
from services.enrollment.recording import record
from shared.contracts.enrollment_rules import SetExclusivity
from shared.uow import UnitOfWork

Uow = UnitOfWork[EnrollmentStore]


async def set_exclusivity(uow: Uow, commands: list[SetExclusivity], now: datetime) -> None:
    """Save each account's setting (a setting is rare: one statement a command)."""
    decided: list[tuple[exclusivity.ExclusivitySet, SetExclusivity]] = []
    for command in commands:
        payload = command.payload
        await uow.store.set_account_exclusivity(command.account_id, payload.exclusivity)
        decided.append(
            (
                exclusivity.ExclusivitySet(command.account_id, payload.exclusivity, payload.actor),
                command,
            )
        )
    await record(uow, decided, now)
