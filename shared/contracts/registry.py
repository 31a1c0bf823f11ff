"""Which message types each topic carries, and decoding of raw Kafka values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.contracts import (
    enrollment_rules,
    events,
    exclusions,
    inbound,
    lifecycle_events,
    migration,
    sms_balance,
    topics,
)
from shared.contracts.base import ACCOUNT_PATTERN, Message
from shared.contracts.commands import COMMAND_MESSAGES

MESSAGES_BY_TOPIC: dict[str, tuple[type[Message], ...]] = {
    topics.INBOUND_EMAIL: inbound.EMAIL_EVENTS,
    topics.INBOUND_WEB: inbound.WEB_EVENTS,
    topics.INBOUND_CRM: inbound.CRM_EVENTS,
    topics.INBOUND_CONVERSATION: inbound.CONVERSATION_EVENTS,
    topics.COMMANDS: (
        *COMMAND_MESSAGES,
        *exclusions.EXCLUSION_COMMANDS,
        *sms_balance.SMS_BALANCE_COMMANDS,
        *enrollment_rules.RULE_COMMANDS,
        *migration.MIGRATION_COMMANDS,
    ),
    topics.WORKFLOW_EVENTS: (
        *events.WORKFLOW_EVENT_MESSAGES,
        *lifecycle_events.WORKFLOW_LIFECYCLE_MESSAGES,
        *enrollment_rules.RULE_EVENTS,
        *migration.MIGRATION_WORKFLOW_EVENTS,
    ),
    topics.ENROLLMENT_EVENTS: (
        *events.ENROLLMENT_EVENT_MESSAGES,
        *lifecycle_events.ENROLLMENT_LIFECYCLE_MESSAGES,
        *enrollment_rules.RULE_ENROLLMENT_EVENTS,
        *migration.MIGRATION_ENROLLMENT_EVENTS,
    ),
    topics.SCHEDULER_STEPS: events.SCHEDULER_MESSAGES,
    topics.MESSAGING_EVENTS: events.MESSAGING_MESSAGES + sms_balance.SMS_BALANCE_EVENTS,
    topics.EXCLUSION_EVENTS: exclusions.EXCLUSION_EVENTS,
    topics.DEAD_LETTER: events.DEAD_LETTER_MESSAGES,
}

MESSAGE_TYPES: dict[str, type[Message]] = {
    model.TYPE: model for models in MESSAGES_BY_TOPIC.values() for model in models
}

_MODEL_BY_TOPIC_AND_TYPE: dict[tuple[str, str], type[Message]] = {
    (topic, model.TYPE): model for topic, models in MESSAGES_BY_TOPIC.items() for model in models
}

TOPIC_OF_TYPE: dict[str, str] = {
    model.TYPE: topic for topic, models in MESSAGES_BY_TOPIC.items() for model in models
}


class InvalidMessageError(ValueError):
    """The bytes are not a valid Offramp message; ``kind`` says which check failed."""

    def __init__(self, kind: str, reason: str, envelope: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.envelope = envelope or {}


@dataclass(frozen=True, slots=True)
class UnknownType:
    """A well-formed envelope whose ``type`` this topic's consumers do not know (yet)."""

    message_id: str
    type: str
    account_id: str


MAX_MESSAGE_BYTES = 1_000_000
"""The largest value a consumer parses: Kafka's default record limit (``message.max.bytes``)."""

MAX_NESTING = 64
"""Deepest JSON nesting parsed: contracts nest a few levels; 5,000 would exhaust the stack."""

_ACCOUNT = re.compile(ACCOUNT_PATTERN)
_UNKNOWN_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")


def decode(value: bytes | None, *, topic: str) -> Message | UnknownType:
    """Parse and validate one Kafka value against the contracts of ``topic``.

    Raises ``InvalidMessageError`` for anything that is not a valid message of a known
    type, whatever went wrong inside (size, encoding, nesting, validation); returns
    ``UnknownType`` for a valid envelope of a type the topic does not list.
    """
    if not value:
        raise InvalidMessageError("invalid_json", "empty message value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise InvalidMessageError(
            "too_large", f"value is {len(value)} bytes; the limit is {MAX_MESSAGE_BYTES}"
        )
    try:
        return _decode(value, topic)
    except InvalidMessageError:
        raise
    except RecursionError as exc:
        raise InvalidMessageError("invalid_json", "value is nested too deeply to parse") from exc
    except Exception as exc:  # whatever fails in one record is that record's
        raise InvalidMessageError("invalid_message", f"value could not be read: {exc!r}") from exc


def _decode(value: bytes, topic: str) -> Message | UnknownType:
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessageError("invalid_json", f"value is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidMessageError("invalid_message", "value is JSON but not an object")
    # Counting brackets is C-fast and bounds the depth from above: most messages skip the walk.
    brackets = value.count(b"{") + value.count(b"[")
    if brackets > MAX_NESTING and _depth(document) > MAX_NESTING:
        raise InvalidMessageError(
            "invalid_message", f"value nests deeper than {MAX_NESTING} levels", _scalars(document)
        )
    _check_storable(value, document)
    message_type = document.get("type")
    if not isinstance(message_type, str) or not message_type:
        raise InvalidMessageError("invalid_message", "field 'type' is missing", document)
    if not _ID.fullmatch(message_type):
        raise InvalidMessageError(
            "invalid_message", "field 'type' is not a type name", _scalars(document)
        )
    model = _MODEL_BY_TOPIC_AND_TYPE.get((topic, message_type))
    if model is None:
        envelope = _unknown_envelope(document)
        return UnknownType(
            message_id=envelope["message_id"], type=message_type, account_id=envelope["account_id"]
        )
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidMessageError(
            "invalid_message", _describe(exc, message_type), document
        ) from exc


def _depth(document: Any) -> int:
    """How deeply ``document`` nests, without recursion (it may be thousands deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_NESTING:
                return deepest
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def _check_storable(value: bytes, document: dict[str, Any]) -> None:
    """Refuse text no database column can hold, before a handler fails on it again and again.

    PostgreSQL text and jsonb refuse NUL, and no UTF-8 encoder takes a lone surrogate
    (both arrive only as JSON escapes; the byte checks keep the common case free).
    """
    if b"\\u0000" in value and any("\x00" in text for text in _texts(document)):
        raise InvalidMessageError(
            "invalid_message", "a text value holds NUL (\\u0000), which cannot be stored"
        )
    if b"\\ud" in value or b"\\uD" in value:
        try:
            json.dumps(document, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise InvalidMessageError(
                "invalid_message", "a text value holds a lone UTF-16 surrogate"
            ) from exc


def _texts(document: Any) -> Iterator[str]:
    """Every string in ``document``, keys included, without recursion."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _scalars(document: dict[str, Any]) -> dict[str, Any]:
    """The top-level scalar fields of ``document`` (enough to say whose it was)."""
    return {k: v for k, v in document.items() if isinstance(v, str | int | float | bool)}


def _unknown_envelope(document: dict[str, Any]) -> dict[str, str]:
    # Even a type we do not know must carry an envelope: an id to record it once (short
    # enough to key the inbox with) and an account (inbox rows are scoped by it).
    message_id = document.get("message_id")
    account_id = document.get("account_id")
    if not isinstance(message_id, str) or not _UNKNOWN_ID.fullmatch(message_id):
        raise InvalidMessageError(
            "invalid_message",
            "field 'message_id' is missing, longer than 128 characters or holds control characters",
            _scalars(document),
        )
    if not isinstance(account_id, str) or not _ACCOUNT.fullmatch(account_id):
        raise InvalidMessageError(
            "invalid_message", "field 'account_id' is missing or not an account id", document
        )
    return {"message_id": message_id, "account_id": account_id}


def _describe(exc: ValidationError, message_type: str) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors(include_url=False)[:10]
    )
    return f"{message_type}: {problems}"
