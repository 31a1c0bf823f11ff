"""Enrollment-rule decisions -> outgoing messages (``account.exclusivity_set``)."""

from __future__ import annotations

from services.enrollment import domain, exclusivity
from shared.contracts import Message
from shared.contracts.enrollment_rules import AccountExclusivitySet, ExclusivitySetPayload


def exclusivity_set(decision: exclusivity.ExclusivitySet, cause: Message) -> AccountExclusivitySet:
    return AccountExclusivitySet.create(
        message_id=domain.event_id(
            "exclusivity_set", cause.account_id, cause.message_id, decision.account_id
        ),
        account_id=cause.account_id,
        caused_by=cause,
        payload=ExclusivitySetPayload(exclusivity=decision.exclusivity, actor=decision.actor),
    )
