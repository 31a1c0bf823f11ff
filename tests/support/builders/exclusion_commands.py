"""Builders of what feeds exclusions in enrollment: rule commands, CRM record data, email
suppressions and uploaded list chunks (account and clock of the enrollment builders)."""

from __future__ import annotations

import uuid
from typing import Any

from shared.contracts import Message, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, Enroll, EnrollPayload
from shared.contracts.exclusions import (
    DeleteExclusionRule,
    DisableExclusionRule,
    ExclusionListChunk,
    ExclusionRuleDefinition,
    ExitListMatches,
    ListChunkPayload,
    ListExitPayload,
    ListKind,
    PutExclusionRule,
    PutExclusionRuleset,
    PutRulePayload,
    PutRulesetPayload,
    RulesetOwner,
    RuleStatePayload,
)
from shared.contracts.inbound import (
    AssociationChange,
    AssociationChanged,
    AssociationChangedPayload,
    BounceKind,
    EmailBounced,
    EmailBouncedPayload,
    EmailEventPayload,
    EmailUnsubscribed,
    FieldChangedPayload,
    RecordFieldChanged,
    RecordUpserted,
    RecordUpsertedPayload,
)
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER
from tests.support.builders.exclusions import rule_def

ACME_ORG = RecordRef(type=RecordType.ORGANIZATION, id="o-acme")


def put_rule(
    rule_id: str = "r-1", *conditions: Any, account_id: str = ACCOUNT, **overrides: Any
) -> PutExclusionRule:
    definition: ExclusionRuleDefinition = rule_def(rule_id, *conditions, **overrides)
    return PutExclusionRule.create(
        account_id=account_id, payload=PutRulePayload(actor=USER, definition=definition)
    )


def disable_rule(rule_id: str = "r-1", account_id: str = ACCOUNT) -> DisableExclusionRule:
    return DisableExclusionRule.create(
        account_id=account_id, payload=RuleStatePayload(actor=USER, rule_id=rule_id)
    )


def delete_rule(rule_id: str = "r-1", account_id: str = ACCOUNT) -> DeleteExclusionRule:
    return DeleteExclusionRule.create(
        account_id=account_id, payload=RuleStatePayload(actor=USER, rule_id=rule_id)
    )


def put_ruleset(
    owner_id: str, toggles: dict[str, bool], owner: RulesetOwner = RulesetOwner.WORKFLOW
) -> PutExclusionRuleset:
    return PutExclusionRuleset.create(
        account_id=ACCOUNT,
        payload=PutRulesetPayload(actor=USER, owner=owner, owner_id=owner_id, toggles=toggles),
    )


def upserted(record: RecordRef, account_id: str = ACCOUNT, **payload: Any) -> RecordUpserted:
    return RecordUpserted.create(
        account_id=account_id,
        occurred_at=T0,
        payload=RecordUpsertedPayload(record=record, **payload),
    )


def field_changed(record: RecordRef, field: str, value: Any) -> RecordFieldChanged:
    return RecordFieldChanged.create(
        account_id=ACCOUNT,
        occurred_at=T0,
        payload=FieldChangedPayload(record=record, field=field, new_value=value),
    )


def associated(record: RecordRef, other: RecordRef, *, added: bool = True) -> AssociationChanged:
    change = AssociationChange.ADDED if added else AssociationChange.REMOVED
    return AssociationChanged.create(
        account_id=ACCOUNT,
        occurred_at=T0,
        payload=AssociationChangedPayload(record=record, associated=other, change=change),
    )


def hard_bounced(address: str) -> EmailBounced:
    return EmailBounced.create(
        account_id=ACCOUNT,
        occurred_at=T0,
        payload=EmailBouncedPayload(from_address=address, bounce=BounceKind.HARD),
    )


def unsubscribed(address: str) -> EmailUnsubscribed:
    return EmailUnsubscribed.create(
        account_id=ACCOUNT, occurred_at=T0, payload=EmailEventPayload(from_address=address)
    )


def list_chunk(
    list_id: str,
    kind: ListKind,
    *entries: str,
    index: int = 0,
    first_line: int = 2,
    upload_id: uuid.UUID | None = None,
) -> ExclusionListChunk:
    return ExclusionListChunk.create(
        account_id=ACCOUNT,
        payload=ListChunkPayload(
            actor=USER,
            list_id=list_id,
            kind=kind,
            upload_id=upload_id or uuid.UUID(int=1),
            chunk_index=index,
            first_line=first_line,
            entries=entries,
        ),
    )


def exit_on_list(list_id: str, workflow_id: str | None = None) -> ExitListMatches:
    return ExitListMatches.create(
        account_id=ACCOUNT,
        payload=ListExitPayload(actor=USER, list_id=list_id, workflow_id=workflow_id),
    )


def enroll_from(
    record: RecordRef,
    *,
    workflow_id: str = "onboarding",
    email: str | None = None,
    audience_id: str | None = None,
    account_id: str = ACCOUNT,
) -> Enroll:
    payload = EnrollPayload(
        workflow_id=workflow_id,
        record=record,
        contact=ContactDetails(email=email or f"{record.id}@acme.com"),
        actor=USER,
        audience_id=audience_id,
    )
    return Enroll.create(account_id=account_id, payload=payload)


def types(messages: list[Message]) -> list[str]:
    return [m.type for m in messages]
