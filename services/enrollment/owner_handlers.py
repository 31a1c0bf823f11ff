"""Enrollment subscribers of owner removal: the account's setting
(``account.set_owner_removal``) and a removed owner's workflows (``workflow.remove_owner``,
which trigger-evaluator publishes for ``user.changed``). See ``owners``."""

from __future__ import annotations

import functools
from datetime import datetime

from services.enrollment import answers, domain, owners
from services.enrollment.ports import EnrollmentStore
from services.enrollment.recording import record
from shared.contracts.commands import RemoveOwner, SetOwnerRemoval
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]


async def set_owner_removal(uow: Uow, commands: list[SetOwnerRemoval], now: datetime) -> None:
    """Save each account's setting (a setting is rare: one statement a command)."""
    decided: list[tuple[owners.OwnerRemovalSet, SetOwnerRemoval]] = []
    for command in commands:
        payload = command.payload
        setting = owners.OwnerPolicy(payload.policy, payload.reassign_to_user_id)
        await uow.store.set_owner_policy(command.account_id, setting)
        decided.append(
            (owners.OwnerRemovalSet(command.account_id, setting, payload.actor), command)
        )
    await record(uow, decided, now)


async def remove_owner(uow: Uow, commands: list[RemoveOwner], now: datetime) -> None:
    """Each workflow the removed user owns exits its live enrollments (in chunks, caused by
    the command) or is reassigned, as the account's setting says; one command at a time,
    each seeing what the one before did."""
    for command in commands:
        payload = command.payload
        account = command.account_id
        owned = await uow.store.owned_workflows_for_update(account, payload.user_id)
        decision = owners.decide_owner_removal(
            owned,
            user_id=payload.user_id,
            setting=await uow.store.owner_policy(account),
            actor=payload.actor,
            sweep_id_for=functools.partial(domain.event_id, "sweep", account, command.message_id),
            now=now,
        )
        if isinstance(decision, domain.Unchanged):
            answer = answers.refused(command, decision.code, decision.why)
            await record(uow, [(answer, command)], now)
            continue
        await uow.store.add_workflow_versions([d.reassigned for d in decision if d.reassigned])
        await uow.store.start_sweeps([(d.sweep, command) for d in decision if d.sweep])
        await record(uow, [(d, command) for d in decision], now)
        log.info("owner_removed", user_id=payload.user_id, workflows=len(decision))
