"""Enrollment-rule decisions -> outgoing messages (``account.exclusivity_set``,
``enrollment.deferred_by_cap``)."""

from __future__ import annotations

from services.enrollment import caps, domain, exclusivity
from shared.contracts import Message
from shared.contracts.enrollment_rules import (
    AccountExclusivitySet,
    DeferredByCapPayload,
    EnrollmentDeferredByCap,
    ExclusivitySetPayload,
)


def exclusivity_set(decision: exclusivity.ExclusivitySet, cause: Message) -> AccountExclusivitySet:
    return AccountExclusivitySet.create(
        message_id=domain.event_id(
            "exclusivity_set", cause.account_id, cause.message_id, decision.account_id
        ),
        account_id=cause.account_id,
        caused_by=cause,
        payload=ExclusivitySetPayload(exclusivity=decision.exclusivity, actor=decision.actor),
    )


def deferred_by_cap(decision: caps.Deferred, cause: Message) -> EnrollmentDeferredByCap:
    payload = decision.command.payload
    return EnrollmentDeferredByCap.create(
        message_id=domain.event_id(
            "deferred_by_cap", cause.account_id, cause.message_id, decision.day.isoformat()
        ),
        account_id=cause.account_id,
        caused_by=cause,
        payload=DeferredByCapPayload(
            workflow_id=payload.workflow_id,
            record=payload.record,
            actor=payload.actor,
            cap=decision.cap,
            day=decision.day,
            release_at=decision.release_at,
        ),
    )
