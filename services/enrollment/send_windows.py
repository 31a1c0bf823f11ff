"""Send windows: when a step due at some instant may go out, in the record's time zone.

Pure: no clock, no I/O. A window (``SendWindow``) opens on its weekdays, except its
holidays, from ``start`` to ``end`` local time. ``next_opening`` gives the first instant at
or after a due time when the window is open, and when that opening closes:

- a local time a DST change skips (spring forward) is taken as the first valid instant
  after the gap, i.e. the instant of the change;
- a local time a DST change repeats (fall back) is taken at its first occurrence, so an
  opening is never counted twice.

Every instant returned is aware and in UTC.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from shared.contracts.workflow import SendWindow

_SEARCH_SLACK_DAYS = 15
"""Beyond its holidays, a window with one weekday opens within two weeks (a DST gap may
swallow one of its days)."""


@dataclass(frozen=True, slots=True)
class Opening:
    """The first instant a step may go out, and the end of the opening it falls in."""

    at: datetime
    closes_at: datetime


def time_zone_of(window: SendWindow, record_time_zone: str | None) -> tzinfo:
    """The zone a record's window is kept in: its own when known, else the workflow's."""
    return zoneinfo.ZoneInfo(record_time_zone or window.time_zone)


def local_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """The UTC instant of local wall time ``at`` on ``day``: a skipped time moves to the
    end of the gap (the first valid instant), a repeated one is its first occurrence."""
    wall = datetime.combine(day, at)
    earlier = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    later = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) == wall:
        return earlier  # it exists; when repeated, fold=0 is its first occurrence (PEP 495)
    # Skipped: the zone changes offset between ``later`` and ``earlier`` (fold=1 reads the
    # wall time with the offset after the change, fold=0 with the one before). The first
    # valid instant after the gap is the change itself, found to the second.
    low, high = min(earlier, later), max(earlier, later)
    offset_after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == offset_after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _sends_on(window: SendWindow, day: date) -> bool:
    return day.isoweekday() in window.weekdays and day not in window.holidays


def next_opening(window: SendWindow, zone: tzinfo, due_at: datetime) -> Opening:
    """The first instant at or after ``due_at`` the window is open in ``zone``, with the
    end of that opening (a day whose opening a DST gap swallows whole is skipped)."""
    if due_at.tzinfo is None:
        raise ValueError("due_at must be an aware datetime")
    day = due_at.astimezone(zone).date()
    for _ in range(len(window.holidays) + _SEARCH_SLACK_DAYS):
        if _sends_on(window, day):
            opens = local_instant(day, window.start, zone)
            closes = local_instant(day, window.end, zone)
            if opens < closes and due_at < closes:
                return Opening(max(opens, due_at.astimezone(UTC)), closes)
        day += timedelta(days=1)
    raise ValueError("the send window never opens")  # pragma: no cover - weekdays >= 1


def planned(window: SendWindow | None, record_time_zone: str | None, due_at: datetime) -> datetime:
    """When a step due at ``due_at`` is planned: the next opening of ``window``, or
    ``due_at`` itself when the workflow has no window."""
    if window is None:
        return due_at
    return next_opening(window, time_zone_of(window, record_time_zone), due_at).at


def open_at(
    window: SendWindow | None, record_time_zone: str | None, at: datetime
) -> Opening | None:
    """The opening ``at`` falls in (None when the window is closed then); without a
    window, always open."""
    if window is None:
        return Opening(at, datetime.max.replace(tzinfo=UTC))
    opening = next_opening(window, time_zone_of(window, record_time_zone), at)
    return opening if opening.at == at.astimezone(UTC) else None
