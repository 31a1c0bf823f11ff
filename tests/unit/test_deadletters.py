"""Choosing dead letters and rebuilding their originals: time filters, selection, bytes."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.deadletters import (
    REPLAY_HEADER,
    Selection,
    decode_original,
    parse_time,
    replay_headers,
)
from tests.support.deadletters import dead_letter

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("90s", NOW - timedelta(seconds=90)),
        ("7d", NOW - timedelta(days=7)),
        ("1w", NOW - timedelta(weeks=1)),
        ("1.5H", NOW - timedelta(minutes=90)),
        (" 2h ", NOW - timedelta(hours=2)),
    ],
)
def test_an_age_counts_back_from_now(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24T10:00:00+02:00", datetime(2026, 11, 24, 8, tzinfo=UTC)),
        ("2026-11-24T10:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
    ],
)
def test_an_iso_time_is_taken_as_is_and_utc_when_it_names_no_zone(
    text: str, expected: datetime
) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2 hours", "h", "-2h", "2026-13-01"])
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="ISO time"):
        parse_time(text, now=NOW)


def test_every_given_criterion_must_hold() -> None:
    one = dead_letter(
        source_topic="t",
        offset=1,
        value=b"{}",
        consumer="offramp-scheduler",
        account="acme",
        kind="rejected",
        occurred_at=NOW - timedelta(hours=1),
    )
    assert Selection().matches(one)
    assert Selection(consumer="offramp-scheduler", account="acme", kind="rejected").matches(one)
    assert not Selection(consumer="offramp-scheduler", account="other").matches(one)
    assert not Selection(kind="invalid_json").matches(one)
    assert Selection(since=NOW - timedelta(hours=2), until=NOW).matches(one)
    assert not Selection(since=NOW - timedelta(minutes=30)).matches(one)
    assert not Selection(until=NOW - timedelta(hours=1)).matches(one)  # until is exclusive
    assert Selection(ids=frozenset({one.message_id})).matches(one)
    assert not Selection(ids=frozenset({uuid.uuid4()})).matches(one)


def test_only_a_selection_without_criteria_is_empty() -> None:
    assert Selection().is_empty
    assert not Selection(kind="rejected").is_empty
    assert not Selection(ids=frozenset({uuid.uuid4()})).is_empty


def test_originals_come_back_byte_for_byte() -> None:
    binary = b"\xff\x00not utf-8"
    assert decode_original('{"a": 1}') == b'{"a": 1}'
    assert decode_original("b64:" + base64.b64encode(binary).decode()) == binary
    assert decode_original("b64:not base64!") == b"b64:not base64!"
    assert decode_original(None) is None


def test_a_recorded_size_settles_a_utf8_original_that_looks_encoded() -> None:
    text = "b64:QUJD"  # valid base64 of b"ABC", but stored as UTF-8
    assert decode_original(text) == b"ABC"
    assert decode_original(text, size=len(text)) == text.encode()
    assert decode_original(text, size=3) == b"ABC"


def test_replay_adds_one_header_naming_the_dead_letter_and_drops_an_earlier_one() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    headers = replay_headers([("trace", b"t-1"), (REPLAY_HEADER, str(first).encode())], second)
    assert headers == [("trace", b"t-1"), (REPLAY_HEADER, str(second).encode())]
