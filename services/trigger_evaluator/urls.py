"""Page-visit URL rules: normalise a visited URL and say whether a workflow's rule matches.

Pure. Both sides are compared as ``host/path`` in lower case, without scheme, ``www.``,
default port, trailing slash, fragment or query string: ``HTTPS://www.Acme.com:443/Pricing/
?utm=x#top`` is ``acme.com/pricing``. Query parameters are compared apart: a rule may
require some (``plan=pro``), the others are ignored. Regex rules run on the ``regex``
engine with a time limit, so no pattern can stall the service.
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import regex

from shared.contracts.trigger_settings import QueryParam, UrlMatch, UrlRule

REGEX_TIMEOUT_S = 0.05
_SCHEME = regex.compile(r"^[a-z][a-z0-9+.-]*://", regex.IGNORECASE)
_DEFAULT_PORTS = (":80", ":443")


@dataclass(frozen=True, slots=True)
class VisitedUrl:
    """A URL as rules see it: ``target`` is ``host/path``; ``query`` its parameters."""

    target: str
    query: dict[str, list[str]]


def normalize(url: str) -> VisitedUrl:
    """``url`` normalised (a URL without scheme, ``acme.com/x``, is read as one)."""
    text = url.strip()
    if not _SCHEME.match(text) and not text.startswith("//"):
        text = "//" + text
    parts = urlsplit(text)
    host = (parts.netloc.rsplit("@", 1)[-1]).lower()
    for port in _DEFAULT_PORTS:
        host = host.removesuffix(port)
    host = host.removeprefix("www.").rstrip(".")
    path = parts.path.rstrip("/").lower()
    return VisitedUrl(f"{host}{path}", parse_qs(parts.query, keep_blank_values=True))


def _clean_pattern(pattern: str) -> str:
    """A contains or glob pattern without scheme, ``www.`` or trailing slash, lower case
    (not split as a URL: ``?`` is a glob wildcard there)."""
    cleaned = _SCHEME.sub("", pattern.strip()).lower()
    cleaned = cleaned.removeprefix("//").removeprefix("www.")
    return cleaned.rstrip("/") or cleaned


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: UrlRule
    target: str
    required: tuple[QueryParam, ...]
    pattern: regex.Pattern[str] | None = None


@functools.lru_cache(maxsize=4096)
def compile_rule(rule: UrlRule) -> CompiledRule:
    """A rule ready to match (cached: a workflow version's rules never change)."""
    if rule.match is UrlMatch.REGEX:
        return CompiledRule(rule, rule.pattern, rule.query, regex.compile(rule.pattern, regex.I))
    if rule.match in (UrlMatch.EXACT, UrlMatch.PREFIX):
        own = normalize(rule.pattern)
        in_pattern = tuple(
            QueryParam(name=name, value=value)
            for name, values in own.query.items()
            for value in values
        )
        return CompiledRule(rule, own.target, (*in_pattern, *rule.query))
    return CompiledRule(rule, _clean_pattern(rule.pattern), rule.query)


def matches(rule: UrlRule, url: VisitedUrl) -> bool:  # noqa: PLR0911 - a case per match kind
    """Whether the visited ``url`` matches ``rule`` (a regex that runs out of time does not)."""
    compiled = compile_rule(rule)
    if not _has_params(url, compiled.required):
        return False
    target = url.target
    match rule.match:
        case UrlMatch.EXACT:
            return target == compiled.target
        case UrlMatch.PREFIX:
            return target.startswith(compiled.target)
        case UrlMatch.CONTAINS:
            return compiled.target in target
        case UrlMatch.GLOB:
            return fnmatch.fnmatchcase(target, compiled.target)
        case UrlMatch.REGEX:
            assert compiled.pattern is not None  # noqa: S101 - compiled above
            try:
                return compiled.pattern.search(target, timeout=REGEX_TIMEOUT_S) is not None
            except TimeoutError:
                return False


def _has_params(url: VisitedUrl, required: tuple[QueryParam, ...]) -> bool:
    for param in required:
        values = url.query.get(param.name)
        if values is None:
            return False
        if param.value is not None and param.value.casefold() not in (v.casefold() for v in values):
            return False
    return True


def first_match(rules: tuple[UrlRule, ...], url: str) -> UrlRule | None:
    """The first of ``rules`` the visited ``url`` matches, or None."""
    visited = normalize(url)
    return next((rule for rule in rules if matches(rule, visited)), None)
