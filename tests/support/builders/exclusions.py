"""Builders of exclusion rules, record data and the commands and events around them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.enrollment.exclusions import RecordData, RuleVersion, Subject
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.exclusions import (
    Condition,
    ConditionGroup,
    ExclusionRuleDefinition,
)

ACCOUNT = "acc"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ADMIN = Actor(kind=ActorKind.USER, id="admin-1")
ANN = RecordRef(type=RecordType.CONTACT, id="c-ann")
BOB = RecordRef(type=RecordType.CONTACT, id="c-bob")
ACME = RecordRef(type=RecordType.ORGANIZATION, id="o-acme")


def cond(field: str, operator: str, value: Any = None) -> Condition:
    return Condition(field=field, operator=operator, value=value)


def rule_def(
    rule_id: str = "r-1", *conditions: Condition, match: str = "all", **overrides: Any
) -> ExclusionRuleDefinition:
    when = ConditionGroup(
        match=match,  # type: ignore[arg-type]
        conditions=conditions or (cond("lifecyclestage", "is", "customer"),),
    )
    fields: dict[str, Any] = {"rule_id": rule_id, "name": f"rule {rule_id}", "when": when}
    return ExclusionRuleDefinition(**{**fields, **overrides})


def rule(
    rule_id: str = "r-1",
    *conditions: Condition,
    version: int = 1,
    enabled: bool = True,
    deleted: bool = False,
    match: str = "all",
    **overrides: Any,
) -> RuleVersion:
    definition = rule_def(rule_id, *conditions, match=match, **overrides)
    return RuleVersion(ACCOUNT, definition, version, enabled=enabled, deleted=deleted)


def contact(
    ref: RecordRef = ANN,
    *,
    email: str | None = "ann@acme.com",
    companies: tuple[RecordData, ...] = (),
    hard_bounced: bool = False,
    unsubscribed: bool = False,
    **data: Any,
) -> Subject:
    return Subject(
        ref,
        RecordData(ref, email=email, **data),
        companies=companies,
        hard_bounced=hard_bounced,
        unsubscribed=unsubscribed,
    )


def company(ref: RecordRef = ACME, **data: Any) -> RecordData:
    return RecordData(ref, **{"company_name": "Acme", "domains": ("acme.com",), **data})
