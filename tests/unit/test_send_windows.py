"""Send windows: the next opening at or after a due instant, in the record's time zone,
across DST changes (skipped and repeated local times), weekends and holidays."""

from __future__ import annotations

import hashlib
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.enrollment.domain import LATER_SETTINGS, definition_hash
from services.enrollment.send_windows import (
    Opening,
    local_instant,
    next_opening,
    open_at,
    planned,
)
from shared.contracts.commands import ContactDetails
from shared.contracts.workflow import SendWindow, Weekday, WorkflowSettings
from tests.support.builders.enrollment_domain import definition

pytestmark = pytest.mark.unit

EVERY_DAY = frozenset(Weekday)
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
LORD_HOWE = zoneinfo.ZoneInfo("Australia/Lord_Howe")
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
ZONES = (BERLIN, NEW_YORK, LORD_HOWE, TOKYO)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(
    start: str, end: str, days: frozenset[Weekday] = EVERY_DAY, **more: object
) -> SendWindow:
    return SendWindow.model_validate({"start": start, "end": end, "weekdays": days, **more})


CASES = [
    pytest.param(
        window("02:30", "04:00"),
        BERLIN,
        utc(2026, 3, 28, 23, 0),
        Opening(utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0)),
        id="berlin-spring-opening-in-the-skipped-hour-opens-when-the-gap-ends",
    ),
    pytest.param(
        window("09:00", "17:00", frozenset(Weekday) - {Weekday.SATURDAY, Weekday.SUNDAY}),
        BERLIN,
        utc(2026, 3, 27, 17, 0),
        Opening(utc(2026, 3, 30, 7, 0), utc(2026, 3, 30, 15, 0)),
        id="berlin-friday-evening-waits-for-monday-in-summer-time",
    ),
    pytest.param(
        window("02:30", "05:00"),
        BERLIN,
        utc(2026, 10, 24, 23, 0),
        Opening(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 4, 0)),
        id="berlin-autumn-repeated-time-opens-at-its-first-occurrence",
    ),
    pytest.param(
        window("02:30", "05:00"),
        BERLIN,
        utc(2026, 10, 25, 1, 15),
        Opening(utc(2026, 10, 25, 1, 15), utc(2026, 10, 25, 4, 0)),
        id="berlin-autumn-second-pass-of-the-repeated-hour-is-still-the-one-opening",
    ),
    pytest.param(
        window("02:00", "02:45", frozenset({Weekday.SUNDAY})),
        NEW_YORK,
        utc(2026, 3, 8, 0, 0),
        Opening(utc(2026, 3, 15, 6, 0), utc(2026, 3, 15, 6, 45)),
        id="new-york-a-window-the-gap-swallows-whole-waits-for-the-next-sunday",
    ),
    pytest.param(
        window("01:30", "09:00"),
        NEW_YORK,
        utc(2026, 11, 1, 4, 0),
        Opening(utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 14, 0)),
        id="new-york-autumn-opens-at-the-first-half-past-one",
    ),
    pytest.param(
        window("02:10", "06:00"),
        LORD_HOWE,
        utc(2026, 10, 3, 12, 0),
        Opening(utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 19, 0)),
        id="lord-howe-half-hour-gap-opens-at-half-past-two",
    ),
    pytest.param(
        window("01:45", "06:00"),
        LORD_HOWE,
        utc(2026, 4, 4, 12, 0),
        Opening(utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 19, 30)),
        id="lord-howe-half-hour-repeat-opens-at-the-first-quarter-to-two",
    ),
    pytest.param(
        window("09:00", "17:00", frozenset(Weekday) - {Weekday.SATURDAY, Weekday.SUNDAY}),
        TOKYO,
        utc(2026, 3, 28, 3, 0),
        Opening(utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 8, 0)),
        id="tokyo-without-dst-saturday-waits-for-monday-nine",
    ),
    pytest.param(
        window(
            "09:00",
            "17:00",
            frozenset(Weekday) - {Weekday.SATURDAY, Weekday.SUNDAY},
            holidays=[date(2026, 12, 24), date(2026, 12, 25)],
        ),
        BERLIN,
        utc(2026, 12, 24, 9, 0),
        Opening(utc(2026, 12, 28, 8, 0), utc(2026, 12, 28, 16, 0)),
        id="berlin-holidays-then-the-weekend-are-skipped",
    ),
    pytest.param(
        window("09:00", "17:00"),
        BERLIN,
        utc(2026, 6, 1, 10, 0),
        Opening(utc(2026, 6, 1, 10, 0), utc(2026, 6, 1, 15, 0)),
        id="a-step-due-inside-the-window-goes-when-due",
    ),
]


@pytest.mark.parametrize(("send_window", "zone", "due_at", "expected"), CASES)
def test_the_next_opening_across_dst_weekends_and_holidays(
    send_window: SendWindow, zone: zoneinfo.ZoneInfo, due_at: datetime, expected: Opening
) -> None:
    assert next_opening(send_window, zone, due_at) == expected


def test_a_skipped_local_time_is_the_first_valid_instant_after_the_gap() -> None:
    assert local_instant(date(2026, 3, 29), time(2, 30), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert local_instant(date(2026, 3, 8), time(2, 59), NEW_YORK) == utc(2026, 3, 8, 7, 0)
    assert local_instant(date(2026, 10, 4), time(2, 10), LORD_HOWE) == utc(2026, 10, 3, 15, 30)


def test_a_repeated_local_time_is_its_first_occurrence() -> None:
    assert local_instant(date(2026, 10, 25), time(2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)
    assert local_instant(date(2026, 11, 1), time(1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)


def test_the_records_time_zone_wins_over_the_workflow_default() -> None:
    nine_to_five = window("09:00", "17:00", time_zone="Asia/Tokyo")
    due = utc(2026, 6, 1, 20, 0)  # 22:00 in Berlin, 05:00 next day in Tokyo
    assert planned(nine_to_five, None, due) == utc(2026, 6, 2, 0, 0)
    assert planned(nine_to_five, "Europe/Berlin", due) == utc(2026, 6, 2, 7, 0)
    assert planned(None, "Europe/Berlin", due) == due


def test_open_at_says_when_the_window_is_closed() -> None:
    nine_to_five = window("09:00", "17:00", time_zone="Europe/Berlin")
    assert open_at(nine_to_five, None, utc(2026, 6, 1, 16, 0)) is None
    assert open_at(nine_to_five, None, utc(2026, 6, 1, 14, 59)) == Opening(
        utc(2026, 6, 1, 14, 59), utc(2026, 6, 1, 15, 0)
    )


def _naively_open(send_window: SendWindow, zone: zoneinfo.ZoneInfo, at: datetime) -> bool:
    local = at.astimezone(zone)
    day = local.date()
    return (
        day.isoweekday() in send_window.weekdays
        and day not in send_window.holidays
        and send_window.start <= local.time().replace(tzinfo=None) < send_window.end
    )


quarter_hours = st.integers(0, 95).map(lambda q: time(q // 4, (q % 4) * 15))


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    start, end = sorted(draw(st.lists(quarter_hours, min_size=2, max_size=2, unique=True)))
    days = draw(st.frozensets(st.sampled_from(list(Weekday)), min_size=1))
    holidays = draw(st.frozensets(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=20))
    return SendWindow(weekdays=days, start=start, end=end, holidays=holidays)


# Instants around the year's DST changes of every zone tested, to the minute.
due_instants = st.integers(0, 366 * 24 * 60).map(
    lambda minutes: utc(2026, 1, 1) + timedelta(minutes=minutes)
)


@settings(max_examples=300, deadline=None)
@given(send_window=windows(), zone=st.sampled_from(ZONES), due_at=due_instants)
def test_the_opening_is_the_first_open_instant_at_or_after_the_due_time(
    send_window: SendWindow, zone: zoneinfo.ZoneInfo, due_at: datetime
) -> None:
    opening = next_opening(send_window, zone, due_at)
    assert due_at <= opening.at < opening.closes_at
    opened_on = opening.at.astimezone(zone).date()
    assert opened_on.isoweekday() in send_window.weekdays
    assert opened_on not in send_window.holidays
    # Open at the opening (or the window was already open since its first occurrence)...
    assert opening.at == due_at or _naively_open(send_window, zone, opening.at)
    # ...and never open in between: nothing is moved later than it had to be.
    probe = due_at
    while probe < opening.at:
        assert not _naively_open(send_window, zone, probe), probe
        probe += timedelta(minutes=5)
    # The opening holds until it closes, and the close is counted once.
    assert open_at(send_window, zone.key, opening.closes_at - timedelta(seconds=1)) is not None
    assert open_at(send_window, zone.key, opening.closes_at) is None or (
        opening.closes_at.astimezone(zone).date() != opened_on
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"start": "17:00", "end": "09:00"},
        {"start": "09:00", "end": "09:00"},
        {"weekdays": []},
        {"weekdays": [8]},
        {"time_zone": "Mars/Olympus_Mons"},
        {"start": "09:00+02:00"},
    ],
)
def test_a_workflow_with_an_impossible_window_is_refused_at_apply(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkflowSettings.model_validate({"send_window": bad})


def test_an_enroll_with_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        ContactDetails(time_zone="Europe/Atlantis")
    assert ContactDetails(time_zone="Australia/Lord_Howe").time_zone == "Australia/Lord_Howe"


def test_a_definition_without_a_window_keeps_the_hash_it_had_before_windows_existed() -> None:
    plain = definition(0)
    before = hashlib.sha256(
        plain.model_dump_json(exclude={"settings": set(LATER_SETTINGS)}).encode()
    ).hexdigest()
    assert definition_hash(plain) == before
    assert definition_hash(definition(0, send_window=SendWindow())) != before
