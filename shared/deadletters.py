"""Operator tooling for dead letters: read them back, select them, replay their originals.

A dead letter (``deadletter.recorded`` on ``offramp.deadletter.v1``) keeps the record a
consumer gave up on: its coordinates, key, headers and bytes. Replaying republishes those
bytes to the topic they came from with one added header, ``offramp-replay-of``, which
tells the consuming pipeline to apply the message even though its inbox remembers the id
as dead-lettered; an id it already applied stays a duplicate, so replay applies once.

Services never import this module: it is what ``offramp deadletters`` runs.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum

from shared.client import OfframpClient, RawRecord
from shared.contracts import InvalidMessageError, decode
from shared.contracts.events import DeadLettered
from shared.contracts.topics import DEAD_LETTER

REPLAY_HEADER = "offramp-replay-of"
B64_PREFIX = "b64:"
# Kafka stamps a dead letter when the outbox relays it, after its occurred_at; this much
# slack covers clocks that disagree between the service and the broker.
CLOCK_SLACK = timedelta(minutes=5)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now: datetime) -> datetime:
    """An ISO 8601 time (UTC if it names no zone) or an age before ``now`` like ``2h``.

    Ages take one unit: ``s``, ``m``, ``h``, ``d`` or ``w`` (``90m``, ``1.5h``, ``7d``).
    """
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit.lower()]: float(amount)})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is neither an ISO time (2026-11-24T10:00Z) nor an age (30m, 2h, 7d)"
        ) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operator means; every given criterion must hold."""

    consumer: str | None = None
    account: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: frozenset[uuid.UUID] = field(default_factory=frozenset)

    @property
    def is_empty(self) -> bool:
        """True when nothing narrows the selection (it would take every dead letter)."""
        return self == Selection()

    def matches(self, letter: DeadLettered) -> bool:
        payload = letter.payload
        return (
            (self.consumer is None or payload.consumer == self.consumer)
            and (self.account is None or letter.account_id == self.account)
            and (self.kind is None or payload.error_kind == self.kind)
            and (self.since is None or letter.occurred_at >= self.since)
            and (self.until is None or letter.occurred_at < self.until)
            and (not self.ids or letter.message_id in self.ids)
        )


@dataclass(frozen=True, slots=True)
class Listing:
    letters: list[DeadLettered]
    unreadable: int
    """Records on the dead-letter topic that are not dead letters this version can read."""


async def list_dead_letters(client: OfframpClient, selection: Selection) -> Listing:
    """The selected dead letters, oldest first, each once (a relay may publish one twice)."""
    since_ms = None
    if selection.since is not None:
        since_ms = int((selection.since - CLOCK_SLACK).timestamp() * 1000)
    records = await client.read_records(DEAD_LETTER, since_ms=since_ms)
    letters: dict[uuid.UUID, DeadLettered] = {}
    unreadable = 0
    for record in records:
        try:
            message = decode(record.value, topic=DEAD_LETTER)
        except InvalidMessageError:
            unreadable += 1
            continue
        if not isinstance(message, DeadLettered):
            unreadable += 1
            continue
        if selection.matches(message):
            letters.setdefault(message.message_id, message)
    ordered = sorted(letters.values(), key=lambda letter: letter.occurred_at)
    return Listing(letters=ordered, unreadable=unreadable)


class Outcome(Enum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    dead_letter_id: uuid.UUID
    outcome: Outcome
    detail: str


def decode_original(text: str | None, size: int | None = None) -> bytes | None:
    """The bytes a dead letter stored as text: UTF-8, or base64 after ``b64:``.

    A UTF-8 original that itself begins with ``b64:`` reads the same as an encoded one;
    when the dead letter records the original's size, the reading of that size wins.
    """
    if text is None:
        return None
    as_utf8 = text.encode()
    if not text.startswith(B64_PREFIX):
        return as_utf8
    try:
        as_base64 = base64.b64decode(text[len(B64_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return as_utf8
    if size is not None and len(as_utf8) == size != len(as_base64):
        return as_utf8
    return as_base64


def replay_headers(
    original: Iterable[tuple[str, bytes]], dead_letter_id: uuid.UUID
) -> list[tuple[str, bytes]]:
    """The original headers plus ``offramp-replay-of`` (replacing one from an earlier replay)."""
    kept = [(name, value) for name, value in original if name != REPLAY_HEADER]
    return [*kept, (REPLAY_HEADER, str(dead_letter_id).encode())]


def _stored_original(letter: DeadLettered) -> RawRecord | None:
    """The original as the dead letter kept it, or None if what it kept is incomplete."""
    payload = letter.payload
    size: int | None = getattr(payload, "original_size", None)
    if getattr(payload, "original_truncated", False):
        return None
    # An empty value with no size recorded was a record without a value (a tombstone).
    value = None if size is None and not payload.original_value else payload.original_value
    original = decode_original(value, size)
    if size is not None and len(original or b"") != size:
        return None
    return RawRecord(
        topic=payload.source_topic,
        partition=payload.source_partition,
        offset=payload.source_offset,
        timestamp_ms=0,
        key=decode_original(payload.source_key),
        value=original,
        headers=tuple(
            (name, decode_original(text) or b"") for name, text in payload.original_headers.items()
        ),
    )


async def original_of(client: OfframpClient, letter: DeadLettered) -> RawRecord | str:
    """The record to republish, or why there is none.

    A dead letter whose original was too large to keep whole (``original_truncated``) is
    replayed from the source topic itself, which holds it until its retention ends.
    """
    stored = _stored_original(letter)
    if stored is not None:
        return stored
    payload = letter.payload
    found = await client.read_at(
        payload.source_topic, payload.source_partition, payload.source_offset
    )
    if found is None:
        return (
            "the dead letter kept only part of the original, which is no longer on"
            f" {payload.source_topic}[{payload.source_partition}]@{payload.source_offset}"
            " (past the topic's retention)"
        )
    return found


async def replay(
    client: OfframpClient, letters: Sequence[DeadLettered], *, dry_run: bool = False
) -> list[ReplayResult]:
    """Republish each dead letter's original to its source topic, in the given order."""
    results = []
    for letter in letters:
        original = await original_of(client, letter)
        if isinstance(original, str):
            results.append(ReplayResult(letter.message_id, Outcome.SKIPPED, original))
            continue
        where = f"{original.topic}[{original.partition}]@{original.offset}"
        if dry_run:
            results.append(ReplayResult(letter.message_id, Outcome.WOULD_REPLAY, f"from {where}"))
            continue
        partition, offset = await client.publish_record(
            original.topic,
            original.value,
            key=original.key,
            headers=replay_headers(original.headers, letter.message_id),
        )
        detail = f"from {where} as {original.topic}[{partition}]@{offset}"
        results.append(ReplayResult(letter.message_id, Outcome.REPLAYED, detail))
    return results
