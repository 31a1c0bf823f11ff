"""Per-workflow settings of the automatic exit triggers (part of ``WorkflowSettings``).

Every setting is checked when the workflow is applied (``workflow.apply``): a rule that
could never match, or could not be evaluated (a regex that does not compile), is refused
there, with the reason, instead of silently never firing.
"""

from __future__ import annotations

from enum import StrEnum

import regex
from pydantic import Field, model_validator

from shared.contracts.base import Contract, Identifier
from shared.contracts.inbound import Channel, FieldValue


class OutOfOfficeSettings(Contract):
    """What an automatic (out-of-office) reply does: it pauses, never exits.

    The enrollment resumes ``resume_margin_hours`` after the start (00:00 UTC) of the
    return date found in the reply, or ``fallback_days`` after the reply when none is
    found, and never later than ``max_days`` after the reply (Outreach's "auto-resume
    expires in").
    """

    pause: bool = Field(
        True, description="Pause the enrollment on an automatic reply (off: ignore it)."
    )
    resume_margin_hours: float = Field(
        24.0,
        ge=0,
        le=24 * 30,
        description="Resume this long after the start (00:00 UTC) of the return date.",
    )
    fallback_days: int = Field(
        14, ge=1, le=365, description="Resume after this many days when no date is found."
    )
    max_days: int = Field(
        30, ge=1, le=365, description="Never resume later than this many days after the reply."
    )

    @model_validator(mode="after")
    def _check(self) -> OutOfOfficeSettings:
        if self.fallback_days > self.max_days:
            raise ValueError("out_of_office.fallback_days must not exceed max_days")
        return self


class UrlMatch(StrEnum):
    """How a page-visit rule compares its pattern with the visited URL, both normalised
    (scheme, ``www.``, default port, trailing slash, fragment and query string dropped;
    host and path compared without case)."""

    EXACT = "exact"
    PREFIX = "prefix"
    CONTAINS = "contains"
    GLOB = "glob"
    """``*`` any characters, ``?`` one, ``[abc]`` one of: ``acme.com/blog/*``."""
    REGEX = "regex"
    """Searched in ``host/path`` (anchor it with ``^``/``$``), without case."""


class QueryParam(Contract):
    """A query parameter the visited URL must carry (with this value, or any)."""

    name: str = Field(min_length=1, max_length=200)
    value: str | None = Field(None, max_length=2000, description="Null: any value.")


MAX_URL_PATTERN = 2048
MAX_REGEX_PATTERN = 500


class UrlRule(Contract):
    """One page-visit rule. A query string in an exact or prefix pattern is read as
    parameters the visited URL must carry (``acme.com/pricing?plan=pro``)."""

    match: UrlMatch
    pattern: str = Field(min_length=1, max_length=MAX_URL_PATTERN)
    query: tuple[QueryParam, ...] = Field((), max_length=20)

    @model_validator(mode="after")
    def _check(self) -> UrlRule:
        if self.match is UrlMatch.REGEX:
            if len(self.pattern) > MAX_REGEX_PATTERN:
                raise ValueError(f"a regex URL rule is at most {MAX_REGEX_PATTERN} characters")
            try:
                regex.compile(self.pattern, regex.IGNORECASE)
            except regex.error as error:
                why = f"URL rule {self.pattern!r} is not a valid regex: {error}"
                raise ValueError(why) from None
        elif not self.pattern.strip(" /*?"):
            raise ValueError(f"URL rule {self.pattern!r} would match every page: leave rules out")
        return self


class FieldOperator(StrEnum):
    """How a field condition reads the field's new value (the operators of exclusion
    conditions that need no uploaded list)."""

    IS = "is"
    IS_NOT = "is_not"
    CONTAINS = "contains"
    IN = "in"
    NOT_IN = "not_in"
    GREATER = "greater"
    LESS = "less"
    SET = "set"
    NOT_SET = "not_set"
    WITHIN_DAYS = "within_days"
    OLDER_THAN_DAYS = "older_than_days"


_NO_VALUE = frozenset({FieldOperator.SET, FieldOperator.NOT_SET})
_LIST_VALUE = frozenset({FieldOperator.IN, FieldOperator.NOT_IN})
_NUMBER_VALUE = frozenset({FieldOperator.WITHIN_DAYS, FieldOperator.OLDER_THAN_DAYS})


class FieldCondition(Contract):
    """``<new value> operator value``: ``set``/``not_set`` take no value, ``in``/``not_in``
    a list, ``within_days``/``older_than_days`` a number of days (the field holds an ISO
    date), ``greater``/``less`` a number or an ISO date; text compares without case."""

    operator: FieldOperator
    value: FieldValue = None

    @model_validator(mode="after")
    def _check(self) -> FieldCondition:
        op, value = self.operator, self.value
        if op in _NO_VALUE and value is not None:
            raise ValueError(f"operator {op.value} takes no value")
        if op in _LIST_VALUE and not isinstance(value, tuple):
            raise ValueError(f"operator {op.value} takes a list of values")
        if op in _NUMBER_VALUE and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"operator {op.value} takes a number of days")
        if op not in _NO_VALUE | _LIST_VALUE and value is None:
            raise ValueError(f"operator {op.value} needs a value")
        return self


class FieldRule(Contract):
    """A field whose change exits: any change, or one whose new value meets every
    condition."""

    field: Identifier = Field(description="The field's internal name.")
    conditions: tuple[FieldCondition, ...] = Field((), max_length=20)


class LinkClickSettings(Contract):
    """Which link clicks count. Only links in this workflow's own emails ever do."""

    ignore_scanner_clicks: bool = Field(
        True,
        description="Ignore clicks that security gateways make when they scan a delivered "
        "email: within `scanner_window_s` of delivery, or from a known scanner's user agent.",
    )
    scanner_window_s: int = Field(10, ge=0, le=600)


class ConversationSettings(Contract):
    """Which conversation messages and assignments count."""

    channels: tuple[Channel, ...] = Field(
        tuple(Channel),
        min_length=1,
        description="Messages on these channels count (default: all).",
    )
