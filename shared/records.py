"""What a consumed record is to the pipeline, and what its dead letter keeps of it.

A record may hold anything: these helpers never fail on its bytes, and a dead letter keeps
as much of the record as fits the broker's record limit (replay reads the rest from the
record's source coordinates).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.contracts import InvalidMessageError, Message, UnknownType, derived_message_id
from shared.contracts.base import ACCOUNT_PATTERN
from shared.contracts.events import DeadLettered, DeadLetterPayload
from shared.inbox import InboxEntry, InboxKey

UNKNOWN_ACCOUNT = "unknown"
"""The account of a dead letter whose record named no valid account."""

REPLAY_HEADER = "offramp-replay-of"
"""Set by ``offramp deadletters replay``: the id of the dead letter a record replays."""

# What a dead letter keeps of the original record: enough to read and replay it, never so
# much that the dead letter itself is too large to publish (a truncated value is replayed
# from its source coordinates instead).
MAX_KEPT_VALUE_CHARS = 256 * 1024
MAX_KEPT_HEADERS = 32
MAX_KEPT_HEADER_CHARS = 1024
MAX_KEPT_KEY_CHARS = 1024
MAX_DEAD_LETTER_BYTES = 900_000
"""A dead letter stays under Kafka's default 1 MB record limit, envelope included."""

_ACCOUNT = re.compile(ACCOUNT_PATTERN)


class KafkaRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Incoming:
    record: KafkaRecord
    message: Message | UnknownType | None
    error: InvalidMessageError | None
    replay_of: str | None = None

    @property
    def account_id(self) -> str:
        if self.message is not None:
            return self.message.account_id
        account = self.error.envelope.get("account_id") if self.error is not None else None
        if isinstance(account, str) and _ACCOUNT.fullmatch(account):
            return account
        return UNKNOWN_ACCOUNT

    @property
    def inbox_id(self) -> str:
        if isinstance(self.message, Message):
            return str(self.message.message_id)
        if isinstance(self.message, UnknownType):
            return self.message.message_id
        r = self.record
        return f"kafka:{r.topic}:{r.partition}:{r.offset}"

    @property
    def inbox_key(self) -> InboxKey:
        return (self.account_id, self.inbox_id)

    @property
    def type_name(self) -> str:
        if self.message is not None:
            return self.message.type
        return "<invalid>"

    def inbox_entry(self, outcome: str) -> InboxEntry:
        return InboxEntry(
            self.account_id, self.inbox_id, self.type_name, outcome, replay_of=self.replay_of
        )


@dataclass(frozen=True, slots=True)
class Coordinates:
    """Where a record is, and nothing of what it holds."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def replay_of(record: KafkaRecord) -> str | None:
    for name, value in record.headers or ():
        if name == REPLAY_HEADER and value:
            return value.decode(errors="replace")[:128]
    return None


def _clip(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(value).decode()
    # NUL is valid UTF-8 but no PostgreSQL text or jsonb value may hold it.
    return text if "\x00" not in text else "b64:" + base64.b64encode(value).decode()


def log_context(item: Incoming) -> dict[str, Any]:
    record = item.record
    context: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "message_key": _text(record.key),
    }
    message = item.message
    if isinstance(message, Message):
        context["account_id"] = message.account_id
        context["message_id"] = str(message.message_id)
        context["message_type"] = message.type
        context["correlation_id"] = str(message.correlation_id or message.message_id)
    elif isinstance(message, UnknownType):
        context["account_id"] = message.account_id
        context["message_type"] = message.type
    return context


def dead_letter(
    consumer: str, item: Incoming, kind: str, reason: str, *, attempts: int
) -> DeadLettered:
    """The dead letter of ``item``: where it was, why, and as much of it as fits."""
    record = item.record
    message = item.message
    value = _text(record.value) or ""
    key = _text(record.key)
    all_headers = list(record.headers or ())
    headers = {
        name[:MAX_KEPT_HEADER_CHARS]: (_text(raw) or "")[:MAX_KEPT_HEADER_CHARS]
        for name, raw in all_headers[:MAX_KEPT_HEADERS]
    }
    # Anything cut (or a header name seen twice) means replay must read the record
    # itself from its source coordinates.
    truncated = (
        len(value) > MAX_KEPT_VALUE_CHARS
        or len(key or "") > MAX_KEPT_KEY_CHARS
        or len(headers) < len(all_headers)
        or any(
            len(name) > MAX_KEPT_HEADER_CHARS or len(_text(raw) or "") > MAX_KEPT_HEADER_CHARS
            for name, raw in all_headers
        )
    )
    account_id = item.account_id
    payload = DeadLetterPayload(
        consumer=consumer,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_key=_clip(key, MAX_KEPT_KEY_CHARS),
        message_id=message.message_id if isinstance(message, Message) else None,
        message_type=item.type_name if message is not None else None,
        error_kind=kind,
        reason=reason[:4000],
        attempts=attempts,
        original_value=value[:MAX_KEPT_VALUE_CHARS],
        original_headers=headers,
        original_truncated=truncated,
        original_size=None if record.value is None else len(record.value),
    )
    dead = DeadLettered.create(
        message_id=derived_message_id(
            "deadletter",
            account_id,
            consumer,
            record.topic,
            record.partition,
            record.offset,
        ),
        account_id=account_id,
        payload=payload,
    )
    # Escaping can make the kept text several times its length in JSON: what the dead
    # letter keeps is cut until the whole message fits the broker's record limit.
    keep = MAX_KEPT_VALUE_CHARS
    while len(dead.to_json()) > MAX_DEAD_LETTER_BYTES and keep:
        keep //= 4
        dead = dead.model_copy(
            update={
                "payload": payload.model_copy(
                    update={
                        "original_value": value[:keep],
                        "original_headers": {} if not keep else headers,
                        "original_truncated": True,
                    }
                )
            }
        )
    return dead
