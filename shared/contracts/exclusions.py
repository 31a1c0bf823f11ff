"""Exclusion rules: who may never be enrolled, or must be taken out, and why.

Commands (rules, rulesets, uploaded lists) go to ``offramp.commands.v1``; enrollment owns
the rules and answers every one of them on ``offramp.exclusion.events.v1`` (a new
version, or a rejection saying what was wrong). Every exclusion command is keyed by
account (``<account_id>/exclusions``): an account's rule, ruleset and list changes apply
in the order they were sent (a rule naming a list comes after the list's chunks).

A rule's meaning is checked by enrollment, not by the schema: an unknown operator, a
value that cannot be compared, a workflow that is not the account's... are answered
with ``exclusion.rejected`` listing every problem, and nothing of the command applies.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from shared.contracts.base import Actor, Contract, Identifier, Message
from shared.contracts.inbound import FieldValue

OPERATORS: tuple[str, ...] = (
    "is",
    "is_not",
    "contains",
    "in",
    "not_in",
    "greater",
    "less",
    "set",
    "not_set",
    "within_days",
    "older_than_days",
    "in_list",
    "not_in_list",
)
"""Every condition operator, by its name in ``Condition.operator``."""

FieldPath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$"),
]
"""A field's internal name (``lifecyclestage``), a built-in one (``email``, ``domain``,
``company_name``, ``record_id``), or an organization's field seen from its contacts
(``company.<name>``)."""


class RuleLevel(StrEnum):
    GLOBAL = "global"
    """The account's rules: every workflow obeys them (see ``enforce_everywhere``)."""
    WORKFLOW = "workflow"
    """One workflow's own rule (part of its ruleset)."""
    AUDIENCE = "audience"
    """Applies to enrolls that name the audience they came from."""


class RuleAction(StrEnum):
    BLOCK = "block"
    """Block new enrollments only."""
    REMOVE = "remove"
    """Block new enrollments and take out enrolled records as soon as they match."""


class RuleScope(StrEnum):
    RECORD = "record"
    """The conditions read the record itself."""
    COMPANY = "company"
    """The conditions read the record's company: every contact of a matching company
    (associated organization, or the same normalised domain) matches."""


class Condition(Contract):
    """``field operator value``. ``within_days``/``older_than_days`` take a number of days;
    ``in``/``not_in`` a list; ``set``/``not_set`` no value; ``in_list``/``not_in_list`` the
    id of an uploaded list (``exclusion_list.chunk``)."""

    field: FieldPath
    operator: str = Field(
        max_length=50, description=f"One of {', '.join(OPERATORS)} (checked by enrollment)."
    )
    value: FieldValue = None

    def describe(self) -> str:
        return (
            f"{self.field} {self.operator} {self.value!r}"
            if self.value is not None
            else (f"{self.field} {self.operator}")
        )


class ConditionGroup(Contract):
    """Conditions (or groups) combined with AND (``all``) or OR (``any``)."""

    match: Literal["all", "any"] = "all"
    conditions: tuple[Condition | ConditionGroup, ...] = Field(min_length=1, max_length=100)


class ExclusionRuleDefinition(Contract):
    """What ``exclusion_rule.put`` carries. A changed definition is the rule's next version."""

    rule_id: Identifier
    name: str = Field(min_length=1, max_length=200)
    level: RuleLevel = RuleLevel.GLOBAL
    workflow_id: Identifier | None = Field(None, description="The workflow of a workflow rule.")
    audience_id: Identifier | None = Field(None, description="The audience of an audience rule.")
    scope: RuleScope = RuleScope.RECORD
    action: RuleAction = RuleAction.BLOCK
    when: ConditionGroup
    exceptions: tuple[Condition, ...] = Field(
        (),
        max_length=100,
        description="AND conditions every match must also meet: `domain is_not example.com` "
        "keeps example.com out of the rule.",
    )
    enforce_everywhere: bool = Field(
        True,
        description="Global rules: the account-wide toggle. While on, the rule applies in "
        "every workflow; while off, a workflow's (or else an audience's) ruleset may turn it "
        "off. Both must be off for a matching record to be enrolled.",
    )


class ExclusionCommand(Message):
    """Exclusion commands of one account apply in the order they were sent."""

    def partition_key(self) -> str:
        return f"{self.account_id}/exclusions"


class PutRulePayload(Contract):
    actor: Actor
    definition: ExclusionRuleDefinition


class PutExclusionRule(ExclusionCommand):
    """Create a rule, or its next version when the definition changed (enabled again)."""

    type: Literal["exclusion_rule.put"] = "exclusion_rule.put"
    payload: PutRulePayload


class RuleStatePayload(Contract):
    actor: Actor
    rule_id: Identifier


class DisableExclusionRule(ExclusionCommand):
    """Keep the rule, but stop applying it (a new version, disabled)."""

    type: Literal["exclusion_rule.disable"] = "exclusion_rule.disable"
    payload: RuleStatePayload


class EnableExclusionRule(ExclusionCommand):
    type: Literal["exclusion_rule.enable"] = "exclusion_rule.enable"
    payload: RuleStatePayload


class DeleteExclusionRule(ExclusionCommand):
    """Stop applying the rule for good (a last version, deleted; its history stays)."""

    type: Literal["exclusion_rule.delete"] = "exclusion_rule.delete"
    payload: RuleStatePayload


class RulesetOwner(StrEnum):
    WORKFLOW = "workflow"
    AUDIENCE = "audience"


class PutRulesetPayload(Contract):
    actor: Actor
    owner: RulesetOwner
    owner_id: Identifier = Field(description="The workflow's or the audience's id.")
    toggles: dict[Identifier, bool] = Field(
        max_length=1000,
        description="Global rule id -> on/off in this ruleset (a rule not named is on). "
        "A workflow's toggle wins over an audience's.",
    )


class PutExclusionRuleset(ExclusionCommand):
    """Replace a workflow's or an audience's toggles of the global rules."""

    type: Literal["exclusion_ruleset.put"] = "exclusion_ruleset.put"
    payload: PutRulesetPayload


class ListKind(StrEnum):
    EMAIL = "email"
    DOMAIN = "domain"
    COMPANY_NAME = "company_name"


ListEntry = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class ListChunkPayload(Contract):
    actor: Actor
    list_id: Identifier
    kind: ListKind
    upload_id: uuid.UUID = Field(description="One per upload: a new upload replaces the list.")
    chunk_index: int = Field(ge=0, description="0 starts the upload (the list is emptied).")
    first_line: int = Field(ge=1, description="The file line of ``entries[0]`` (for reports).")
    entries: tuple[ListEntry, ...] = Field(max_length=5000)


class ExclusionListChunk(ExclusionCommand):
    """Part of an uploaded list of emails, domains or company names, in file order."""

    type: Literal["exclusion_list.chunk"] = "exclusion_list.chunk"
    payload: ListChunkPayload


class ListExitPayload(Contract):
    actor: Actor
    list_id: Identifier
    workflow_id: Identifier | None = Field(None, description="Only this workflow; null: all.")


class ExitListMatches(ExclusionCommand):
    """Bulk exit: every live enrollment whose record matches the list exits at once."""

    type: Literal["exclusion_list.exit_matches"] = "exclusion_list.exit_matches"
    payload: ListExitPayload


EXCLUSION_COMMANDS: tuple[type[Message], ...] = (
    PutExclusionRule,
    DisableExclusionRule,
    EnableExclusionRule,
    DeleteExclusionRule,
    PutExclusionRuleset,
    ExclusionListChunk,
    ExitListMatches,
)


# --- events (offramp.exclusion.events.v1) -----------------------------------------------


class RuleChange(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DISABLED = "disabled"
    ENABLED = "enabled"
    DELETED = "deleted"


class RuleVersionPayload(Contract):
    rule_id: Identifier
    version: int = Field(ge=1)
    change: RuleChange
    enabled: bool
    deleted: bool
    definition: ExclusionRuleDefinition
    actor: Actor


class ExclusionEvent(Message):
    def partition_key(self) -> str:
        return f"{self.account_id}/exclusions"


class ExclusionRuleVersioned(ExclusionEvent):
    """A rule was created, changed, disabled, enabled or deleted: its new version."""

    type: Literal["exclusion_rule.versioned"] = "exclusion_rule.versioned"
    payload: RuleVersionPayload


class Problem(Contract):
    code: str = Field(max_length=100)
    detail: str = Field(max_length=2000)


class ExclusionRejectedPayload(Contract):
    command_type: str = Field(max_length=100)
    rule_id: Identifier | None = None
    list_id: Identifier | None = None
    actor: Actor
    problems: tuple[Problem, ...] = Field(min_length=1, max_length=100)


class ExclusionRejected(ExclusionEvent):
    """An exclusion command that changed nothing, with every reason; its causation id is
    the command's message id."""

    type: Literal["exclusion.rejected"] = "exclusion.rejected"
    payload: ExclusionRejectedPayload


class RulesetPayload(Contract):
    owner: RulesetOwner
    owner_id: Identifier
    toggles: dict[Identifier, bool]
    actor: Actor


class ExclusionRulesetChanged(ExclusionEvent):
    type: Literal["exclusion_ruleset.changed"] = "exclusion_ruleset.changed"
    payload: RulesetPayload


class BadEntry(Contract):
    line: int = Field(ge=1)
    value: str = Field(max_length=400)
    reason: str = Field(max_length=400)


class ListChunkAppliedPayload(Contract):
    list_id: Identifier
    upload_id: uuid.UUID
    chunk_index: int = Field(ge=0)
    accepted: int = Field(ge=0)
    bad: tuple[BadEntry, ...] = Field((), max_length=5000)


class ExclusionListChunkApplied(ExclusionEvent):
    """A chunk of an upload was stored: how many entries, and the bad ones with their line."""

    type: Literal["exclusion_list.chunk_applied"] = "exclusion_list.chunk_applied"
    payload: ListChunkAppliedPayload


class ListMatchesExitedPayload(Contract):
    list_id: Identifier
    workflow_id: Identifier | None = None
    exited: int = Field(ge=0)


class ExclusionListMatchesExited(ExclusionEvent):
    """A bulk exit by list is done; each exit is an ``enrollment.exited`` of its own."""

    type: Literal["exclusion_list.matches_exited"] = "exclusion_list.matches_exited"
    payload: ListMatchesExitedPayload


EXCLUSION_EVENTS: tuple[type[Message], ...] = (
    ExclusionRuleVersioned,
    ExclusionRejected,
    ExclusionRulesetChanged,
    ExclusionListChunkApplied,
    ExclusionListMatchesExited,
)
