"""The daily cap on new enrollments per workflow. Pure.

A workflow's day is local to its send window's time zone (UTC without a window). An
enroll admitted while the day already counts ``cap`` new enrollments waits for the next
day instead (``Deferred``): it is parked until that day starts, behind every enroll that
was waiting before it, and decided then (again deferred if that day fills up too)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from shared.contracts.commands import Enroll
from shared.contracts.workflow import WorkflowSettings


@dataclass(frozen=True, slots=True)
class CapDay:
    """One local day of a capped workflow: when it starts and ends (UTC instants)."""

    day: date
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class Deferred:
    """An enroll over the cap: it waits until ``release_at`` (the start of ``day``)."""

    command: Enroll
    cap: int
    day: date
    release_at: datetime
    arrived_at: datetime
    """When the enroll first arrived: waiting enrolls are decided in this order."""


def cap_day(settings: WorkflowSettings, now: datetime) -> CapDay:
    """The workflow's local day ``now`` falls in."""
    window = settings.send_window
    zone: tzinfo = ZoneInfo(window.time_zone) if window else UTC
    today = now.astimezone(zone).date()
    return CapDay(today, _start(today, zone), _start(today + timedelta(days=1), zone))


def _start(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)


def next_day(current: CapDay, settings: WorkflowSettings) -> CapDay:
    """The local day after ``current``."""
    return cap_day(settings, current.ends_at)


def over_cap(settings: WorkflowSettings, admitted_today: int) -> bool:
    cap = settings.daily_enrollment_cap
    return cap is not None and admitted_today >= cap
