"""``user.changed``: a user deleted or downgraded. Trigger-evaluator does not know who owns
which workflow (enrollment does), so it hands the fact on as a ``workflow.remove_owner``
command; enrollment exits or reassigns that user's workflows, as the account is set."""

from __future__ import annotations

from datetime import datetime

from services.trigger_evaluator.ports import TriggerEvaluatorStore
from shared.contracts import SYSTEM_ACTOR, derived_message_id, topics
from shared.contracts.commands import RemoveOwner, RemoveOwnerPayload, TriggeringEvent
from shared.contracts.inbound import UserChanged
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)


def remove_owner_command(event: UserChanged, *, now: datetime) -> RemoveOwner:
    """The command for ``event``: its id derived from it, so a repeat is the same command."""
    changed = event.payload
    return RemoveOwner.create(
        message_id=derived_message_id("remove-owner", event.account_id, event.message_id),
        account_id=event.account_id,
        occurred_at=now,
        caused_by=event,
        payload=RemoveOwnerPayload(
            user_id=changed.user_id,
            change=changed.change,
            actor=SYSTEM_ACTOR,
            triggering_event=TriggeringEvent(
                message_id=event.message_id,
                type=event.type,
                topic=topics.INBOUND_CRM,
                occurred_at=event.occurred_at,
            ),
        ),
    )


async def users_changed(
    uow: UnitOfWork[TriggerEvaluatorStore], events: list[UserChanged], now: datetime
) -> None:
    for event in events:
        log.info("owner_removal_requested", user_id=event.payload.user_id)
        uow.publish(remove_owner_command(event, now=now))
