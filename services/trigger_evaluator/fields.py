"""Field set or updated: whether a field's change meets a workflow's field rule. Pure.

The operators are those of exclusion conditions that need no uploaded list. Text compares
without case; a multi-select field (a list) meets ``is``/``contains``/``in`` when one of
its values does; dates are ISO 8601 text, compared with the event's time for
``within_days``/``older_than_days``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared.contracts.inbound import FieldValue
from shared.contracts.trigger_settings import FieldCondition, FieldOperator, FieldRule

Scalar = bool | int | float | str


def first_rule_met(
    rules: tuple[FieldRule, ...], field: str, new_value: FieldValue, at: datetime
) -> FieldRule | None:
    """The first rule about ``field`` whose every condition the new value meets."""
    return next(
        (
            rule
            for rule in rules
            if rule.field == field and all(meets(c, new_value, at) for c in rule.conditions)
        ),
        None,
    )


def meets(  # noqa: PLR0911, PLR0912 - one case per operator
    condition: FieldCondition, value: FieldValue, at: datetime
) -> bool:
    """Whether ``value`` (a field's new value) meets ``condition`` at time ``at``."""
    op, wanted = condition.operator, condition.value
    values: tuple[Scalar, ...] = (
        value if isinstance(value, tuple) else () if value is None else (value,)
    )
    match op:
        case FieldOperator.SET:
            return any(v != "" for v in values)
        case FieldOperator.NOT_SET:
            return not any(v != "" for v in values)
        case FieldOperator.IS:
            return any(_equal(v, wanted) for v in values)
        case FieldOperator.IS_NOT:
            return not any(_equal(v, wanted) for v in values)
        case FieldOperator.CONTAINS:
            return any(_contains(v, wanted) for v in values)
        case FieldOperator.IN:
            options = wanted if isinstance(wanted, tuple) else ()
            return any(_equal(v, o) for v in values for o in options)
        case FieldOperator.NOT_IN:
            options = wanted if isinstance(wanted, tuple) else ()
            return not any(_equal(v, o) for v in values for o in options)
        case FieldOperator.GREATER:
            return any(_compare(v, wanted) > 0 for v in values if _comparable(v, wanted))
        case FieldOperator.LESS:
            return any(_compare(v, wanted) < 0 for v in values if _comparable(v, wanted))
        case FieldOperator.WITHIN_DAYS | FieldOperator.OLDER_THAN_DAYS:
            days = wanted if isinstance(wanted, int | float) else 0
            since = at - timedelta(days=float(days))
            for v in values:
                when = _as_datetime(v)
                if when is None:
                    continue
                if (when >= since) is (op is FieldOperator.WITHIN_DAYS):
                    return True
            return False


def _equal(value: Scalar, wanted: FieldValue) -> bool:
    if isinstance(value, str) and isinstance(wanted, str):
        return value.casefold() == wanted.casefold()
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return value == wanted


def _contains(value: Scalar, wanted: FieldValue) -> bool:
    if isinstance(value, str) and isinstance(wanted, str):
        return wanted.casefold() in value.casefold()
    return _equal(value, wanted)


def _comparable(value: Scalar, wanted: FieldValue) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return False
    if isinstance(value, int | float) and isinstance(wanted, int | float):
        return True
    return _as_datetime(value) is not None and _as_datetime(wanted) is not None


def _compare(value: Scalar, wanted: FieldValue) -> int:
    if isinstance(value, int | float) and isinstance(wanted, int | float):
        return (value > wanted) - (value < wanted)
    left, right = _as_datetime(value), _as_datetime(wanted)
    assert left is not None  # noqa: S101 - _comparable said so
    assert right is not None  # noqa: S101 - _comparable said so
    return (left > right) - (left < right)


def _as_datetime(value: object) -> datetime | None:
    """An ISO 8601 date or date-time as an aware date-time (UTC when it names no zone)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
