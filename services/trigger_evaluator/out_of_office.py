"""Automatic replies: tell one from a person's reply, find when its sender is back, and say
until when the enrollment pauses. Pure (no I/O): the phrases are in ``out_of_office_phrases``.

An email platform hands over the reply's headers, subject and the start of its body. The
headers decide first (RFC 3834 ``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
``X-Autorespond``, ``Precedence``/``X-Precedence`` ``auto_reply``/``bulk``/``junk``, an
empty ``Return-Path``); then the subject's prefix; then the body's set phrases. The
return date is read from the body with ``dateparser`` in the language the phrases were
found in (every supported one when none was), future dates preferred and, in European
languages, the day before the month. A date that ends an absence inclusively ("until and
including 30 September", "jusqu'au 2 octobre inclus", "tot en met 18 september") means
back the day after; of several dates, the latest one still ahead wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dateparser.search import search_dates

from services.trigger_evaluator.out_of_office_phrases import (
    BY_CODE,
    COMPILED,
    DEFAULT_LANGUAGES,
    Compiled,
)
from shared.contracts.inbound import EmailHeader, EmailRepliedPayload
from shared.contracts.trigger_settings import OutOfOfficeSettings

BODY_SCAN_CHARS = 3000
"""Auto-reply formulas open the message; the rest is mostly quoted text and signatures."""
DATE_SCAN_CHARS = 1500
"""Where the return date is looked for: the auto-reply's own text, not the quoted email."""
MAX_AHEAD = timedelta(days=400)
"""A date further ahead than this is not a return date (a typo, a year misread)."""
MAX_AHEAD_WITHOUT_YEAR = timedelta(days=120)
"""A date written without its year that far ahead is a past day ("from 9/8" on 10
September) that preferring the future moved to next year, or not a date at all (a
version "2.3"): not a return date. Long absences give the year."""
_YEAR = re.compile(r"\d{4}")
_SHORT_DOTTED = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})(?!\.?\d)\.?")
"""A day and month written "3.10." (German, Dutch, Scandinavian...), which dateparser
does not read: rewritten "3/10" before searching (positions are taken in that text)."""

_PRECEDENCE_AUTO = frozenset({"auto_reply", "bulk", "junk"})
_AUTO_HEADERS = frozenset({"x-autoreply", "x-autorespond", "x-autoresponder"})
_SENTENCE_END = re.compile(r"[!?\n]|\.\s+(?=[A-ZÄÖÜÅ])")
"""Where a sentence ends (not the dot of "einschl. 2.10.")."""


@dataclass(frozen=True, slots=True)
class AutoReply:
    """An automatic reply: how it was told apart, and the return date it gives, if any."""

    evidence: str
    language: str | None = None
    return_date: date | None = None
    date_evidence: str | None = None

    def explain(self) -> str:
        found = self.date_evidence or "no return date found"
        return f"automatic reply ({self.evidence}); {found}"


def detect(reply: EmailRepliedPayload, received_at: datetime) -> AutoReply | None:
    """The automatic reply ``reply`` is, or None when a person wrote it.

    ``received_at`` (the event's time) is what "next Monday" or a year-less date is read
    against, so a replayed reply always gives the same date.
    """
    in_body = body_match(reply.body_excerpt)
    in_subject = subject_match(reply.subject)
    evidence = (
        _upstream(reply)
        or header_evidence(reply.headers)
        or (in_subject[1] if in_subject else None)
        or (in_body[1] if in_body else None)
    )
    if evidence is None:
        return None
    # The body's phrases say best which language its dates are in ("Ausente:" is Spanish
    # and Portuguese alike), then the subject's.
    language = in_body[0] if in_body else in_subject[0] if in_subject else None
    if reply.auto_reply_return_date is not None:
        back = reply.auto_reply_return_date
        return AutoReply(evidence, language, back, f"back on {back} (said by the email platform)")
    found_date = find_return_date(reply.body_excerpt, language, received_at)
    if found_date is None:
        return AutoReply(evidence, language)
    back, why = found_date
    return AutoReply(evidence, language, back, why)


def _upstream(reply: EmailRepliedPayload) -> str | None:
    return "the email platform flagged it" if reply.auto_reply else None


def header_evidence(headers: Iterable[EmailHeader]) -> str | None:
    """The header that marks an automatic reply, or None. ``X-Auto-Response-Suppress``
    alone does not: it asks others not to answer automatically, it is no answer itself."""
    for header in headers:
        name = header.name.strip().lower()
        value = header.value.strip().lower()
        keyword = value.split(";", 1)[0].strip()
        if name == "auto-submitted" and keyword and keyword != "no":
            return f"header Auto-Submitted: {header.value.strip()}"
        if name in _AUTO_HEADERS:
            return f"header {header.name.strip()}"
        if name in ("precedence", "x-precedence") and keyword in _PRECEDENCE_AUTO:
            return f"header {header.name.strip()}: {header.value.strip()}"
        if name == "x-autogenerated" and keyword == "reply":
            return "header X-Autogenerated: Reply"
        if name == "return-path" and value in ("<>", ""):
            return "empty Return-Path"
    return None


def subject_match(subject: str | None) -> tuple[str, str] | None:
    """(language, evidence) of a subject that starts like an automatic reply."""
    if not subject:
        return None
    for compiled in COMPILED:
        if found := compiled.subject.search(subject):
            return compiled.language.code, f"subject starts with {found.group(0).strip()!r}"
    return None


def body_match(body: str | None) -> tuple[str, str] | None:
    """(language, evidence) of a body with an out-of-office formula near its start."""
    if not body:
        return None
    head = body[:BODY_SCAN_CHARS]
    earliest: tuple[int, Compiled, re.Match[str]] | None = None
    for compiled in COMPILED:
        found = compiled.body.search(head)
        if found is not None and (earliest is None or found.start() < earliest[0]):
            earliest = (found.start(), compiled, found)
    if earliest is None:
        return None
    _, compiled, found = earliest
    phrase = " ".join(found.group(0).split())
    return compiled.language.code, f"body says {phrase!r}"


def find_return_date(
    body: str | None, language: str | None, received_at: datetime
) -> tuple[date, str] | None:
    """The day the sender is back, and the words it was read from; None if not found.

    Dates before the reply's day (the quoted email's "On 10 Sep ... wrote") and too far
    ahead are not return dates.
    """
    if not body:
        return None
    text = body[:DATE_SCAN_CHARS]
    today = received_at.astimezone(UTC).date()
    best: tuple[date, str] | None = None
    # The reply's own language first; the others when it gives no date in it.
    codes = dict.fromkeys([*([language] if language else []), *DEFAULT_LANGUAGES])
    for code in codes:
        for back, why, has_year in _dates_in(text, code, received_at):
            ahead = MAX_AHEAD if has_year else MAX_AHEAD_WITHOUT_YEAR
            if today <= back <= today + ahead and (best is None or back > best[0]):
                best = (back, why)
        if best is not None:
            break
    return best


def _dates_in(text: str, code: str, received_at: datetime) -> list[tuple[date, str, bool]]:
    """Each date in ``text`` read in language ``code``: the day back, the words it was
    read from, and whether they gave the year."""
    compiled = BY_CODE.get(code)
    settings: dict[str, Any] = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": received_at.astimezone(UTC).replace(tzinfo=None),
        "REQUIRE_PARTS": ["day", "month"],
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    if compiled is not None and compiled.language.date_order:
        settings["DATE_ORDER"] = compiled.language.date_order
        if compiled.language.date_order == "DMY":
            text = _SHORT_DOTTED.sub(r"\1/\2", text)
    found = search_dates(text, languages=[code], settings=settings) or []
    dates: list[tuple[date, str, bool]] = []
    position = 0
    for words, when in found:
        start = text.find(words, position)
        if start < 0:
            start = text.find(words)
        end = start + len(words) if start >= 0 else 0
        position = max(position, end)
        day, quoted = when.date(), words.strip()
        has_year = _YEAR.search(words) is not None
        if compiled is not None and start >= 0 and _inclusive(compiled, text, start, end):
            back = day + timedelta(days=1)
            dates.append((back, f"back on {back}: away until and including {quoted!r}", has_year))
        else:
            dates.append((day, f"back on {day}: read from {quoted!r}", has_year))
    return dates


def _inclusive(compiled: Compiled, text: str, start: int, end: int) -> bool:
    """Whether the words around a date make it the last day away, within its sentence."""
    before = text[max(0, start - 40) : start]
    cut = max((m.end() for m in _SENTENCE_END.finditer(before)), default=0)
    before = before[cut:]
    after = text[end : end + 20]
    return bool(
        (compiled.inclusive_before and compiled.inclusive_before.search(before))
        or (compiled.inclusive_after and compiled.inclusive_after.search(after))
    )


@dataclass(frozen=True, slots=True)
class PlannedResume:
    """When a paused enrollment resumes, and why then."""

    at: datetime
    why: str


def plan_resume(
    auto_reply: AutoReply, received_at: datetime, settings: OutOfOfficeSettings
) -> PlannedResume:
    """The resume of a pause on ``auto_reply``: the return date plus the margin, or the
    fallback without a date, never later than the maximum (and never before the reply)."""
    latest = received_at + timedelta(days=settings.max_days)
    if auto_reply.return_date is not None:
        start = datetime.combine(auto_reply.return_date, time(), UTC)
        at = max(start + timedelta(hours=settings.resume_margin_hours), received_at)
        why = f"return date {auto_reply.return_date} + {settings.resume_margin_hours:g} h margin"
    else:
        at = received_at + timedelta(days=settings.fallback_days)
        why = f"no return date: fallback of {settings.fallback_days} days"
    if at > latest:
        return PlannedResume(latest, f"{why}, capped at the maximum of {settings.max_days} days")
    return PlannedResume(at, why)


def sample_languages() -> Sequence[str]:
    """Every language whose phrases are known (for documentation and tests)."""
    return tuple(c.language.code for c in COMPILED)
