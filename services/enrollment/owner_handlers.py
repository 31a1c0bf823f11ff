"""Enrollment subscribers of owner removal: the account's setting
(``account.set_owner_removal``) and a removed owner's workflows: ``user.changed`` from the
CRM (enrollment reads ``offramp.inbound.crm.v1``), or ``workflow.remove_owner``. See
``owners``."""

from __future__ import annotations

import functools
from datetime import datetime

from services.enrollment import answers, domain, owners
from services.enrollment.ports import EnrollmentStore
from services.enrollment.recording import record
from shared.contracts import SYSTEM_ACTOR, Actor, Message
from shared.contracts.commands import RemoveOwner, SetOwnerRemoval
from shared.contracts.inbound import UserChanged
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
    """A removed owner named by a command (an operator, or a CRM without ``user.changed``)."""
    await _remove(uow, [(c, c.payload.user_id, c.payload.actor) for c in commands], now)


async def users_changed(uow: Uow, events: list[UserChanged], now: datetime) -> None:
    """A user deleted or downgraded, as the CRM says (``user.changed``)."""
    await _remove(uow, [(e, e.payload.user_id, SYSTEM_ACTOR) for e in events], now)


async def _remove(uow: Uow, causes: list[tuple[Message, str, Actor]], now: datetime) -> None:
    """Each workflow the removed user owns exits its live enrollments (in chunks, caused by
    the message) or is reassigned, as the account's setting says; one message at a time,
    each seeing what the one before did."""
    for cause, user_id, actor in causes:
        account = cause.account_id
        owned = await uow.store.owned_workflows_for_update(account, user_id)
        decision = owners.decide_owner_removal(
            owned,
            user_id=user_id,
            setting=await uow.store.owner_policy(account),
            actor=actor,
            sweep_id_for=functools.partial(domain.event_id, "sweep", account, cause.message_id),
            now=now,
        )
        if isinstance(decision, domain.Unchanged):
            answer = answers.refused(cause, decision.code, decision.why)
            await record(uow, [(answer, cause)], now)
            continue
        await uow.store.add_workflow_versions([d.reassigned for d in decision if d.reassigned])
        await uow.store.start_sweeps([(d.sweep, cause) for d in decision if d.sweep])
        await record(uow, [(d, cause) for d in decision], now)
        log.info("owner_removed", user_id=user_id, workflows=len(decision))
