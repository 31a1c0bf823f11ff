"""The daily enrollment cap's days (``services.enrollment.caps``): local to the send
window's time zone, UTC without one."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.enrollment.caps import cap_day, next_day, over_cap
from shared.contracts.workflow import SendWindow, WorkflowSettings

pytestmark = pytest.mark.unit

BERLIN = WorkflowSettings(send_window=SendWindow(time_zone="Europe/Berlin"))


def test_without_a_window_the_day_is_the_utc_day() -> None:
    day = cap_day(WorkflowSettings(), datetime(2026, 3, 2, 23, 59, tzinfo=UTC))
    assert day.day == date(2026, 3, 2)
    assert (day.starts_at, day.ends_at) == (
        datetime(2026, 3, 2, tzinfo=UTC),
        datetime(2026, 3, 3, tzinfo=UTC),
    )


def test_with_a_window_the_day_is_local_to_its_time_zone() -> None:
    day = cap_day(BERLIN, datetime(2026, 3, 2, 23, 30, tzinfo=UTC))  # 00:30 in Berlin
    assert day.day == date(2026, 3, 3)
    assert day.starts_at == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)


def test_the_day_after_a_dst_change_starts_at_local_midnight() -> None:
    before = cap_day(BERLIN, datetime(2026, 3, 29, 12, 0, tzinfo=UTC))  # clocks go forward
    after = next_day(before, BERLIN.model_copy())
    assert (before.day, after.day) == (date(2026, 3, 29), date(2026, 3, 30))
    assert before.ends_at - before.starts_at == after.starts_at - before.starts_at
    assert after.starts_at == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cap", "today", "full"), [(None, 10**6, False), (3, 2, False), (3, 3, True)]
)
def test_a_day_is_full_once_it_counts_the_cap(cap: int | None, today: int, full: bool) -> None:
    assert over_cap(WorkflowSettings(daily_enrollment_cap=cap), today) is full


INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive;
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001 - timezones= makes the values aware
    timezones=st.just(UTC),
)


@given(INSTANTS)
def test_every_instant_falls_in_its_day_and_the_next_day_follows_it(now: datetime) -> None:
    day = cap_day(BERLIN, now)
    following = next_day(day, BERLIN)
    assert day.starts_at <= now < day.ends_at
    assert following.starts_at == day.ends_at
    assert (following.day - day.day).days == 1
