"""Rule, ruleset and list commands, decided purely: a new version, or every problem.

A command with any problem changes nothing (``Refusal``); one that changes nothing
(the definition is the current one, the rule is already disabled...) is ``Unchanged``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.enrollment.domain import Unchanged
from services.enrollment.exclusion_rules_lists import ChunkDecision
from services.enrollment.exclusions import BUILTIN_RULES, RuleVersion, validate_rule
from shared.contracts import Actor, Message
from shared.contracts.exclusions import (
    DeleteExclusionRule,
    DisableExclusionRule,
    EnableExclusionRule,
    ListKind,
    Problem,
    PutExclusionRule,
    PutExclusionRuleset,
    RuleChange,
    RulesetOwner,
)

RuleCommand = PutExclusionRule | DisableExclusionRule | EnableExclusionRule | DeleteExclusionRule

_BUILTIN = {d.rule_id: d for d in BUILTIN_RULES}


@dataclass(frozen=True, slots=True)
class Versioned:
    """A rule's new version."""

    rule: RuleVersion
    change: RuleChange
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class Refusal:
    """An exclusion command that changed nothing, and every reason."""

    command: Message
    problems: tuple[Problem, ...]
    rule_id: str | None = None
    list_id: str | None = None


@dataclass(frozen=True, slots=True)
class RulesetPut:
    account_id: str
    owner: RulesetOwner
    owner_id: str
    toggles: Mapping[str, bool]
    actor: Actor


ExclusionDecision = Versioned | Refusal | RulesetPut | ChunkDecision


def current_or_builtin(
    account_id: str, rule_id: str, stored: RuleVersion | None
) -> RuleVersion | None:
    """The rule as it stands: stored, or a built-in rule the account never changed."""
    if stored is None and rule_id in _BUILTIN:
        return RuleVersion(account_id, _BUILTIN[rule_id], 1)
    return stored


def decide_rule(  # noqa: PLR0911 - a case a command and state
    command: RuleCommand,
    current: RuleVersion | None,
    *,
    workflow_known: bool,
    list_kinds: Mapping[str, ListKind],
    now: datetime,
) -> Versioned | Refusal | Unchanged:
    """The next version of the rule ``command`` names (``current`` is its version now)."""
    actor = command.payload.actor
    if isinstance(command, PutExclusionRule):
        definition = command.payload.definition
        problems = validate_rule(definition, workflow_known=workflow_known, list_kinds=list_kinds)
        if problems:
            return Refusal(command, tuple(problems), rule_id=definition.rule_id)
        if current is None or current.deleted:
            return Versioned(
                RuleVersion(
                    command.account_id, definition, (current.version + 1) if current else 1
                ),
                RuleChange.CREATED,
                actor,
                now,
            )
        if current.definition == definition and current.enabled:
            return Unchanged("the definition is the rule's current one")
        rule = RuleVersion(command.account_id, definition, current.version + 1)
        return Versioned(rule, RuleChange.UPDATED, actor, now)
    rule_id = command.payload.rule_id
    if current is None or current.deleted:
        problem = Problem(
            code="unknown_rule", detail=f"no exclusion rule {rule_id!r} in this account"
        )
        return Refusal(command, (problem,), rule_id=rule_id)
    if isinstance(command, DeleteExclusionRule):
        change, enabled, deleted = RuleChange.DELETED, current.enabled, True
    elif isinstance(command, DisableExclusionRule):
        if not current.enabled:
            return Unchanged("the rule is already disabled")
        change, enabled, deleted = RuleChange.DISABLED, False, False
    else:
        if current.enabled:
            return Unchanged("the rule is already enabled")
        change, enabled, deleted = RuleChange.ENABLED, True, False
    rule = RuleVersion(
        command.account_id,
        current.definition,
        current.version + 1,
        enabled=enabled,
        deleted=deleted,
    )
    return Versioned(rule, change, actor, now)


def decide_ruleset(command: PutExclusionRuleset, *, workflow_known: bool) -> RulesetPut | Refusal:
    payload = command.payload
    if payload.owner is RulesetOwner.WORKFLOW and not workflow_known:
        problem = Problem(
            code="unknown_workflow", detail=f"no workflow {payload.owner_id!r} in this account"
        )
        return Refusal(command, (problem,))
    return RulesetPut(
        command.account_id, payload.owner, payload.owner_id, dict(payload.toggles), payload.actor
    )
