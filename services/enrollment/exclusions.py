"""Pure exclusion decisions: which rules apply to an enrollment, and which of them match.

No I/O. Handlers load the rules, the rulesets and what Offramp knows of a record (its
``Subject``), then ask here: ``screen`` gives every applicable rule that matches, sorted
by rule id, so a rule set's answer never depends on the order its rules were created.

A field resolves to a tuple of values (none: not set). Positive operators hold when any
value satisfies them (a multi-select field ``is`` an option it holds; a contact's
``email`` is its address or any alias); their negations (``is_not``, ``not_in``,
``not_in_list``, ``not_set``) hold when the positive one does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from shared.contracts import RecordRef, RecordType
from shared.contracts.events import ExclusionHit
from shared.contracts.exclusions import (
    OPERATORS,
    Condition,
    ConditionGroup,
    ExclusionRuleDefinition,
    ListKind,
    Problem,
    RuleAction,
    RuleLevel,
    RuleScope,
)
from shared.contracts.inbound import FieldScalar, FieldValue
from shared.domains import list_value, normalize_domain

BUILTIN_PREFIX = "builtin."
HARD_BOUNCED_FIELD = "hard_bounced"
UNSUBSCRIBED_FIELD = "unsubscribed"
BUILTIN_FIELDS = frozenset(
    {"email", "domain", "company_name", "record_id", HARD_BOUNCED_FIELD, UNSUBSCRIBED_FIELD}
)
COMPANY_PREFIX = "company."

_NEGATIONS = {"is_not": "is", "not_in": "in", "not_set": "set", "not_in_list": "in_list"}


@dataclass(frozen=True, slots=True)
class RuleVersion:
    """One version of a rule, as stored: its definition and whether it is in force."""

    account_id: str
    definition: ExclusionRuleDefinition
    version: int
    enabled: bool = True
    deleted: bool = False

    @property
    def rule_id(self) -> str:
        return self.definition.rule_id

    @property
    def active(self) -> bool:
        return self.enabled and not self.deleted

    @property
    def removes(self) -> bool:
        return self.active and self.definition.action is RuleAction.REMOVE


def _builtin(rule_id: str, name: str, field_name: str) -> ExclusionRuleDefinition:
    return ExclusionRuleDefinition(
        rule_id=f"{BUILTIN_PREFIX}{rule_id}",
        name=name,
        when=ConditionGroup(conditions=(Condition(field=field_name, operator="is", value=True),)),
    )


BUILTIN_RULES: tuple[ExclusionRuleDefinition, ...] = (
    _builtin("hard_bounced", "Hard-bounced contacts", HARD_BOUNCED_FIELD),
    _builtin("unsubscribed", "Unsubscribed contacts", UNSUBSCRIBED_FIELD),
)
"""Global rules every account has, on until disabled. They read the contact's *current*
address: a contact whose email changed since the bounce can be enrolled again."""


def with_builtins(account_id: str, stored: Iterable[RuleVersion]) -> list[RuleVersion]:
    """The account's rules: those stored, plus each built-in one it never changed."""
    rules = {r.rule_id: r for r in stored}
    for definition in BUILTIN_RULES:
        rules.setdefault(definition.rule_id, RuleVersion(account_id, definition, 1))
    return list(rules.values())


# --- what Offramp knows of a record ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordData:
    """The projection of one CRM record: what rules may read."""

    record: RecordRef
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    email: str | None = None
    aliases: tuple[str, ...] = ()
    company_name: str | None = None
    domains: tuple[str, ...] = ()
    """Normalised (``normalize_domain``)."""
    associations: frozenset[RecordRef] = frozenset()
    known: bool = True
    """False when only links to the record are known (the CRM never sent the record)."""


def email_domains(emails: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(d for e in emails if (d := normalize_domain(e.rpartition("@")[2]))))


def record_domains(data: RecordData) -> tuple[str, ...]:
    """The domains a record is found by: its company's, else its addresses' (a contact
    with no company known belongs to its address's domain)."""
    if data.domains:
        return data.domains
    return email_domains((data.email, *data.aliases) if data.email else data.aliases)


@dataclass(frozen=True, slots=True)
class Subject:
    """A record as the rules see it: its own data and its companies' (the organizations
    it is associated with, or that share its domain), and its address's suppressions."""

    record: RecordRef
    data: RecordData | None = None
    companies: tuple[RecordData, ...] = ()
    hard_bounced: bool = False
    unsubscribed: bool = False

    @property
    def emails(self) -> tuple[str, ...]:
        if self.data is None or self.data.email is None:
            return self.data.aliases if self.data else ()
        return (self.data.email, *self.data.aliases)

    @property
    def company_domains(self) -> tuple[str, ...]:
        own = self.data.domains if self.data else ()
        found = dict.fromkeys((*own, *(d for c in self.companies for d in c.domains)))
        if not found:  # no company known: the address's domain says which company it is
            return email_domains(self.emails)
        return tuple(found)

    def values(self, name: str, scope: RuleScope = RuleScope.RECORD) -> tuple[FieldScalar, ...]:
        """Every value of field ``name`` (none: not set)."""
        if name in BUILTIN_FIELDS:
            return self._builtin(name)
        if name.startswith(COMPANY_PREFIX) or scope is RuleScope.COMPANY:
            own = (self.data,) if self.data and self.record.type is RecordType.ORGANIZATION else ()
            key = name.removeprefix(COMPANY_PREFIX)
            return tuple(v for c in (*own, *self.companies) for v in _flat(c.fields.get(key)))
        return _flat(self.data.fields.get(name)) if self.data else ()

    def _builtin(self, name: str) -> tuple[FieldScalar, ...]:
        if name == "email":
            return self.emails
        if name == "domain":
            return self.company_domains
        if name == "company_name":
            names = (self.data.company_name if self.data else None,)
            return tuple(
                dict.fromkeys(n for n in (*names, *(c.company_name for c in self.companies)) if n)
            )
        if name == "record_id":
            return (self.record.id,)
        if name == HARD_BOUNCED_FIELD:
            return (self.hard_bounced,)
        return (self.unsubscribed,)


def _flat(value: FieldValue) -> tuple[FieldScalar, ...]:
    if value is None:
        return ()
    if isinstance(value, tuple | list):
        return tuple(v for v in value if v is not None and v != "")
    return () if value == "" else (value,)


# --- conditions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListHits:
    """What an uploaded list holds of the values at hand: the store answers membership for
    the subjects of a run, so a list of 50,000 entries is never loaded whole."""

    kind: ListKind
    hits: frozenset[str] = frozenset()

    def holds(self, value: FieldScalar) -> bool:
        normalised = list_value(self.kind, str(value))
        return normalised is not None and normalised in self.hits


def _number(value: FieldScalar | None) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


def _moment(value: FieldScalar | None) -> datetime | None:
    """An ISO 8601 date or time as an aware datetime (a date is its UTC midnight)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _same(field_name: str, seen: FieldScalar, wanted: FieldScalar) -> bool:
    if isinstance(seen, bool) or isinstance(wanted, bool):
        return seen is wanted
    if isinstance(seen, str) and isinstance(wanted, str):
        if field_name == "domain":
            return seen == normalize_domain(wanted)
        return seen.casefold() == wanted.casefold()
    a, b = _number(seen), _number(wanted)
    return a is not None and a == b


def _compare(seen: FieldScalar, wanted: FieldScalar) -> int | None:
    """-1, 0, 1 comparing ``seen`` with ``wanted``, as numbers or as moments; None: cannot."""
    a, b = _number(seen), _number(wanted)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    x, y = _moment(seen), _moment(wanted)
    if x is not None and y is not None:
        return (x > y) - (x < y)
    return None


@dataclass(frozen=True, slots=True)
class Context:
    now: datetime
    lists: Mapping[str, ListHits] = field(default_factory=dict)


def _scalar(value: FieldValue) -> FieldScalar | None:
    return None if value is None or isinstance(value, tuple | list) else value


def _positive(  # noqa: PLR0911 - a case an operator
    condition: Condition, operator: str, values: tuple[FieldScalar, ...], ctx: Context
) -> bool:
    wanted = _scalar(condition.value)
    name = condition.field
    match operator:
        case "set":
            return bool(values)
        case "is":
            return wanted is not None and any(_same(name, v, wanted) for v in values)
        case "contains":
            needle = str(wanted).casefold()
            return any(needle in str(v).casefold() for v in values)
        case "in":
            options = condition.value if isinstance(condition.value, tuple) else ()
            return any(_same(name, v, w) for v in values for w in options)
        case "greater":
            return wanted is not None and any(_compare(v, wanted) == 1 for v in values)
        case "less":
            return wanted is not None and any(_compare(v, wanted) == -1 for v in values)
        case "within_days":
            days = timedelta(days=_number(wanted) or 0)
            moments = (_moment(v) for v in values)
            return any(m is not None and abs(ctx.now - m) <= days for m in moments)
        case "older_than_days":
            days = timedelta(days=_number(wanted) or 0)
            return any(m is not None and m < ctx.now - days for m in map(_moment, values))
        case "in_list":
            found = ctx.lists.get(str(wanted))
            return found is not None and any(found.holds(v) for v in values)
    raise ValueError(f"unknown operator {operator!r}")  # validate_rule keeps these out


def holds(condition: Condition, subject: Subject, ctx: Context, scope: RuleScope) -> bool:
    values = subject.values(condition.field, scope)
    operator = condition.operator
    if operator in _NEGATIONS:
        return not _positive(condition, _NEGATIONS[operator], values, ctx)
    return _positive(condition, operator, values, ctx)


def _group_holds(group: ConditionGroup, subject: Subject, ctx: Context, scope: RuleScope) -> bool:
    results = (
        _group_holds(c, subject, ctx, scope)
        if isinstance(c, ConditionGroup)
        else holds(c, subject, ctx, scope)
        for c in group.conditions
    )
    return all(results) if group.match == "all" else any(results)


def conditions_of(definition: ExclusionRuleDefinition) -> list[Condition]:
    """Every condition of a rule, its exceptions included, in order."""
    found: list[Condition] = []
    stack: list[Condition | ConditionGroup] = [definition.when]
    while stack:
        node = stack.pop(0)
        if isinstance(node, ConditionGroup):
            stack[:0] = node.conditions
        else:
            found.append(node)
    return found + list(definition.exceptions)


def describe(definition: ExclusionRuleDefinition) -> str:
    def group(g: ConditionGroup) -> str:
        return f" {'AND' if g.match == 'all' else 'OR'} ".join(
            f"({group(c)})" if isinstance(c, ConditionGroup) else c.describe() for c in g.conditions
        )

    text = group(definition.when)
    if definition.exceptions:
        text += " AND " + " AND ".join(c.describe() for c in definition.exceptions)
    if definition.scope is RuleScope.COMPANY:
        text = f"company: {text}"
    return text[:2000]


def matches(rule: RuleVersion, subject: Subject, ctx: Context) -> ExclusionHit | None:
    """The hit of ``rule`` on ``subject`` (what matched, the values seen), or None."""
    definition = rule.definition
    scope = definition.scope
    if not _group_holds(definition.when, subject, ctx, scope):
        return None
    if not all(holds(c, subject, ctx, scope) for c in definition.exceptions):
        return None
    seen: dict[str, FieldValue] = {}
    for condition in conditions_of(definition):
        values = subject.values(condition.field, scope)
        seen[condition.field] = values[0] if len(values) == 1 else (values or None)
    return ExclusionHit(
        rule_id=rule.rule_id,
        version=rule.version,
        level=definition.level.value,
        condition=describe(definition),
        values_seen=seen,
    )


# --- which rules apply ------------------------------------------------------------------

Toggles = Mapping[str, bool]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a record goes (or is): the workflow, the audience it came from, the toggles of
    both rulesets."""

    workflow_id: str
    audience_id: str | None = None
    workflow_toggles: Toggles = field(default_factory=dict)
    audience_toggles: Toggles = field(default_factory=dict)


def applies(rule: RuleVersion, target: Target) -> bool:
    """Whether ``rule`` is in force for ``target``.

    A global rule applies while its account-wide toggle (``enforce_everywhere``) is on;
    while it is off, the workflow's ruleset decides, or if that does not name it the
    audience's, and a rule neither names stays on. Workflow rules apply to their workflow;
    audience rules to enrolls from their audience, unless the workflow turns them off.
    """
    if not rule.active:
        return False
    definition = rule.definition
    match definition.level:
        case RuleLevel.WORKFLOW:
            return definition.workflow_id == target.workflow_id
        case RuleLevel.AUDIENCE:
            return (
                target.audience_id is not None
                and definition.audience_id == target.audience_id
                and target.workflow_toggles.get(rule.rule_id, True)
            )
    if definition.enforce_everywhere:
        return True
    if rule.rule_id in target.workflow_toggles:
        return target.workflow_toggles[rule.rule_id]
    return target.audience_toggles.get(rule.rule_id, True)


def screen(
    rules: Iterable[RuleVersion],
    subject: Subject,
    target: Target,
    ctx: Context,
    *,
    removing_only: bool = False,
) -> list[ExclusionHit]:
    """Every rule in force for ``target`` that matches ``subject``, by rule id.

    ``removing_only`` keeps the *remove* rules (an enrolled record is taken out only by
    those; *block* rules only keep new enrollments out).
    """
    hits = []
    for rule in sorted(rules, key=lambda r: r.rule_id):
        if removing_only and not rule.removes:
            continue
        if applies(rule, target) and (hit := matches(rule, subject, ctx)) is not None:
            hits.append(hit)
    return hits


def lists_named(rules: Iterable[RuleVersion]) -> dict[str, list[str]]:
    """List id -> the fields conditions match against it, over ``rules``."""
    named: dict[str, list[str]] = {}
    for rule in rules:
        for condition in conditions_of(rule.definition):
            if condition.operator in ("in_list", "not_in_list"):
                named.setdefault(str(condition.value), []).append(condition.field)
    return named


# --- validation -----------------------------------------------------------------------


def _value_problem(condition: Condition) -> str | None:  # noqa: PLR0911 - a case an operator
    op, value = condition.operator, condition.value
    if op not in OPERATORS:
        return f"unknown operator {op!r} (one of {', '.join(OPERATORS)})"
    if op in ("set", "not_set"):
        return None if value is None else f"{op} takes no value"
    if op in ("in", "not_in"):
        ok = isinstance(value, tuple) and bool(value)
        return None if ok else f"{op} takes a non-empty list of values"
    if op in ("within_days", "older_than_days"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return None if ok else f"{op} takes a whole number of days above 0"
    if op in ("greater", "less"):
        comparable = isinstance(value, int | float) and not isinstance(value, bool)
        if comparable or _moment(value if isinstance(value, str) else None) is not None:
            return None
        return f"{op} compares numbers or ISO 8601 dates; {value!r} is neither"
    if value is None or isinstance(value, tuple):
        return f"{op} takes one value"
    if op == "contains" and not isinstance(value, str):
        return "contains takes text"
    return None


def validate_rule(
    definition: ExclusionRuleDefinition,
    *,
    workflow_known: bool,
    list_kinds: Mapping[str, ListKind],
) -> list[Problem]:
    """Every problem of a rule, or none: a rule with any is never applied, even in part."""
    problems: list[Problem] = []
    if definition.rule_id.startswith(BUILTIN_PREFIX):
        problems.append(
            Problem(code="builtin_rule", detail="built-in rules can be disabled, not redefined")
        )
    level = definition.level
    if level is RuleLevel.WORKFLOW and definition.workflow_id is None:
        problems.append(
            Problem(code="missing_workflow", detail="a workflow rule names its workflow")
        )
    if level is RuleLevel.WORKFLOW and definition.workflow_id and not workflow_known:
        problems.append(
            Problem(
                code="unknown_workflow",
                detail=f"no workflow {definition.workflow_id!r} in this account",
            )
        )
    if level is RuleLevel.AUDIENCE and definition.audience_id is None:
        problems.append(
            Problem(code="missing_audience", detail="an audience rule names its audience")
        )
    if level is not RuleLevel.WORKFLOW and definition.workflow_id is not None:
        problems.append(
            Problem(code="misplaced_workflow", detail=f"a {level.value} rule names no workflow")
        )
    if level is not RuleLevel.AUDIENCE and definition.audience_id is not None:
        problems.append(
            Problem(code="misplaced_audience", detail=f"a {level.value} rule names no audience")
        )
    for condition in conditions_of(definition):
        if (why := _value_problem(condition)) is not None:
            code = "unknown_operator" if condition.operator not in OPERATORS else "invalid_value"
            problems.append(Problem(code=code, detail=f"{condition.describe()}: {why}"))
        elif (
            condition.operator in ("in_list", "not_in_list")
            and str(condition.value) not in list_kinds
        ):
            problems.append(
                Problem(code="unknown_list", detail=f"no uploaded list {condition.value!r}")
            )
    return problems
