"""Decoding any bytes at all: a valid message, or an InvalidMessageError with a reason.

Whatever a record holds, the only outcomes are a message, an unknown type, or an
``InvalidMessageError`` that the pipeline dead-letters; anything else raised here would
fail the whole batch again and again.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts import InvalidMessageError, Message, UnknownType, decode, topics
from shared.contracts.registry import MAX_MESSAGE_BYTES, MAX_NESTING

pytestmark = pytest.mark.unit

ENVELOPE = {
    "message_id": "7d3f8a52-52c4-4a57-9d5e-2b8f0d6f1c11",
    "account_id": "acc-1",
    "occurred_at": "2026-01-01T00:00:00Z",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def outcome(value: bytes, topic: str = topics.INBOUND_EMAIL) -> str:
    try:
        result = decode(value, topic=topic)
    except InvalidMessageError as exc:
        return exc.kind if exc.reason else "rejected without a reason"
    assert isinstance(result, Message | UnknownType)
    return "decoded"


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_say_why(value: bytes) -> None:
    assert outcome(value) in {"decoded", "invalid_json", "invalid_message", "too_large"}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(payload=json_values, message_type=st.sampled_from(["email.replied", "x.unknown", ""]))
def test_any_json_in_an_envelope_decodes_or_says_why(payload: Any, message_type: str) -> None:
    value = json.dumps({**ENVELOPE, "type": message_type, "payload": payload}).encode()
    assert outcome(value) in {"decoded", "invalid_message"}


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 5_000, 100_000])
def test_deeply_nested_json_is_invalid_not_a_crash(depth: int) -> None:
    document = b'{"type": "email.replied", "payload": ' + nested(depth) + b"}"
    assert outcome(document) in {"invalid_json", "invalid_message"}


def test_nesting_within_the_limit_is_read() -> None:
    value = json.dumps({**ENVELOPE, "type": "x.unknown", "payload": json.loads(nested(10))})
    assert outcome(value.encode()) == "decoded"


def test_a_value_over_the_size_limit_is_too_large_before_it_is_parsed() -> None:
    value = b'{"type": "email.replied", "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    with pytest.raises(InvalidMessageError) as caught:
        decode(value, topic=topics.INBOUND_EMAIL)
    assert caught.value.kind == "too_large"
    assert str(len(value)) in caught.value.reason


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("message_id", "m" * 5_000, "message_id"),
        ("message_id", "bad\x00id", "NUL"),
        ("message_id", 12, "message_id"),
        ("account_id", "a" * 65, "account_id"),
        ("account_id", "acc\x00", "NUL"),
        ("type", "t" * 5_000, "type"),
        ("type", "x.unknown\x00", "NUL"),
        ("type", "x.unknown\n", "type"),
        ("message_id", "bad\nid", "message_id"),
    ],
)
def test_an_envelope_whose_ids_cannot_be_kept_is_invalid(field: str, value: Any, why: str) -> None:
    document = {**ENVELOPE, "type": "x.unknown", field: value}
    with pytest.raises(InvalidMessageError) as caught:
        decode(json.dumps(document).encode(), topic=topics.INBOUND_EMAIL)
    assert caught.value.kind == "invalid_message"
    assert why in caught.value.reason


def test_invalid_utf8_is_invalid_json() -> None:
    assert outcome(b'{"type": "\xff\xfe"}') == "invalid_json"


def test_an_unknown_type_with_a_plain_id_is_still_recorded_once() -> None:
    message_id = str(uuid.uuid4())
    document = {**ENVELOPE, "message_id": message_id, "type": "x.unknown"}
    result = decode(json.dumps(document).encode(), topic=topics.INBOUND_EMAIL)
    assert result == UnknownType(message_id=message_id, type="x.unknown", account_id="acc-1")


@pytest.mark.parametrize(
    ("text", "why"),
    [("a\\u0000b", "NUL"), ("\\ud800", "surrogate"), ("\\udc00x", "surrogate")],
)
def test_text_no_database_can_store_is_invalid(text: str, why: str) -> None:
    value = b'{"type": "x.unknown", "payload": {"note": "' + text.encode() + b'"}}'
    with pytest.raises(InvalidMessageError) as caught:
        decode(value, topic=topics.INBOUND_EMAIL)
    assert why in caught.value.reason


@pytest.mark.parametrize("text", ["\\\\u0000", "\\ud83d\\ude00", "caf\\u00e9"])
def test_escapes_that_are_storable_text_are_read(text: str) -> None:
    value = json.dumps({**ENVELOPE, "type": "x.unknown"})[:-1] + f', "note": "{text}"}}'
    assert outcome(value.encode()) == "decoded"
