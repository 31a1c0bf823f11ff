"""Garbage for every topic a service consumes, generated with hypothesis.

Each record starts from a valid message of a type the topic carries (about a record the
test never enrolls) and is spoiled one way: nested thousands of levels deep, a value of
~900 KB, invalid UTF-8, ids of several KB, fields of the wrong JSON type, timestamps far
in the past or future, required fields missing, a type nobody knows, or no JSON at all.
Generation is derandomized and bounded, and done before anything is published, so every
run publishes the same records.

What a consumer must do with each is decided here, by the contracts' own ``decode``: a
record it cannot decode must end as a dead letter from every consumer group of the topic;
one it can (an unknown type, a valid event with an extreme but legal timestamp) must at
least be recorded (in the inbox, or dead-lettered).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType, decode, topics
from shared.contracts.commands import Enroll, EnrollPayload, ExitReason, ExitSource
from shared.contracts.events import (
    EnrollmentExited,
    ExitedPayload,
    MessageSent,
    MessageSentPayload,
    StepDue,
    StepDuePayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import (
    Channel,
    ConversationMessagePayload,
    ConversationMessageReceived,
    EmailEventPayload,
    EmailUnsubscribed,
    FieldChangedPayload,
    PageVisited,
    PageVisitedPayload,
    RecordFieldChanged,
)
from shared.contracts.workflow import Step, WorkflowDefinition

GHOST = RecordRef(type=RecordType.CONTACT, id="ghost-never-enrolled")
ACTOR = Actor(kind=ActorKind.USER, id="poisoner")
INBOUND_TOPICS = (
    topics.INBOUND_EMAIL,
    topics.INBOUND_WEB,
    topics.INBOUND_CRM,
    topics.INBOUND_CONVERSATION,
)
TOP_SIZE = 900_000
"""Bytes of the largest values: under the broker's default 1 MB record limit."""


class Expect(StrEnum):
    DEAD_LETTER = "dead_letter"
    """Every consumer group of the topic publishes a dead letter for it."""
    RECORDED = "recorded"
    """Every consumer group dead-letters it or records its id in its inbox."""


@dataclass(frozen=True)
class Poison:
    topic: str
    kind: str
    value: bytes | None
    expect: Expect
    message_id: str | None
    """The envelope's ``message_id`` if it is a string (how the inbox would know it)."""

    def describe(self) -> str:
        size = len(self.value) if self.value is not None else 0
        return f"{self.kind} on {self.topic} ({size} bytes, id {str(self.message_id)[:40]!r})"


def template(topic: str, account_id: str) -> dict[str, Any]:
    """A valid message of ``topic`` about nobody the test enrolls, as a JSON document."""
    enrollment: dict[str, Any] = {
        "enrollment_id": uuid.uuid4(),
        "workflow_id": "wf-ghost",
        "workflow_version": 1,
        "record": GHOST,
    }
    now = datetime.now(UTC)
    payloads: dict[str, tuple[type[Message], Any]] = {
        # Types every consumer group of the topic handles (enrollment reads unsubscribes
        # and field changes for exclusions, trigger-evaluator for exits): a valid one must
        # end in each group's inbox; a type a group does not handle it only skips (messaging
        # reads only delivery reports on the conversation topic: test_poison knows it).
        topics.INBOUND_EMAIL: (
            EmailUnsubscribed,
            EmailEventPayload(record=GHOST, from_address="ghost@example.com"),
        ),
        topics.INBOUND_WEB: (PageVisited, PageVisitedPayload(record=GHOST, url="https://x/")),
        topics.INBOUND_CRM: (
            RecordFieldChanged,
            FieldChangedPayload(record=GHOST, field="lifecyclestage", new_value="lead"),
        ),
        topics.INBOUND_CONVERSATION: (
            ConversationMessageReceived,
            ConversationMessagePayload(record=GHOST, channel=Channel.CHAT, conversation_id="g"),
        ),
        topics.COMMANDS: (
            Enroll,
            EnrollPayload(workflow_id="wf-ghost", record=GHOST, actor=ACTOR),
        ),
        topics.WORKFLOW_EVENTS: (
            WorkflowApplied,
            WorkflowAppliedPayload(
                version=1,
                actor=ACTOR,
                definition=WorkflowDefinition(
                    workflow_id="wf-ghost",
                    name="Ghost",
                    record_type=RecordType.CONTACT,
                    steps=(Step(step_id="s", body="b"),),
                ),
            ),
        ),
        topics.ENROLLMENT_EVENTS: (
            EnrollmentExited,
            ExitedPayload(
                **enrollment,
                reason=ExitReason.MANUAL,
                source=ExitSource.MANUAL,
                actor=ACTOR,
                steps_completed=0,
            ),
        ),
        topics.SCHEDULER_STEPS: (
            StepDue,
            StepDuePayload(
                **enrollment, step_index=0, step_id="s", channel=Channel.EMAIL, due_at=now
            ),
        ),
        topics.MESSAGING_EVENTS: (
            MessageSent,
            MessageSentPayload(
                **enrollment,
                step_index=0,
                step_id="s",
                channel=Channel.EMAIL,
                provider_message_id="<ghost@offramp.local>",
                recipient="ghost@example.com",
                sent_at=now,
            ),
        ),
    }
    model, payload = payloads[topic]
    document: dict[str, Any] = model.create(account_id=account_id, payload=payload).model_dump(
        mode="json"
    )
    return document


def _nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


JUNK = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.text(max_size=20),
)
FIELDS = ("message_id", "type", "account_id", "occurred_at", "payload", "schema_version")
TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59.999999+00:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "0000-01-01T00:00:00Z",
            "+275760-09-13T00:00:00Z",
            "2026-13-45T99:99:99Z",
            "2026-01-01T00:00:00",
        ]
    ),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(min_value=-1e300, max_value=1e300),
)


Spoiler = Callable[[st.DrawFn, dict[str, Any]], bytes | None]
"""Spoils a valid document (which it may change) into the bytes to publish."""


def _deep_nesting(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
    depth = draw(st.integers(min_value=3_000, max_value=20_000))
    if draw(st.booleans()):
        return _nested(depth, "1").encode()
    text = json.dumps({**doc, "payload": None})
    return text.replace('"payload": null', f'"payload": {_nested(depth, "{}")}').encode()


def _huge_value(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
    char = draw(st.sampled_from(["a", "é", "€", "😀"]))
    size = draw(st.integers(min_value=TOP_SIZE - 100_000, max_value=TOP_SIZE))
    field = draw(st.sampled_from(["payload", "type", "correlation_id", "extra"]))
    value = char * (size // len(char.encode()))
    if field == "payload":
        doc["payload"] = {**doc["payload"], "record": {"type": "contact", "id": value}}
    else:
        doc[field] = value
    return json.dumps(doc, ensure_ascii=False).encode()


def _invalid_utf8(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
    raw = json.dumps(doc).encode()
    cut = draw(st.integers(min_value=0, max_value=len(raw)))
    junk = draw(st.binary(min_size=1, max_size=16))
    return raw[:cut] + b"\xff\xfe" + junk + b"\xc3" + raw[cut:]


def _oversized(field: str) -> Spoiler:
    def spoil(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
        size = draw(st.integers(min_value=2_000, max_value=20_000))
        doc["type"] = draw(st.sampled_from([doc["type"], "poison.unknown_type"]))
        doc[field] = draw(st.sampled_from(["x", "0", "é"])) * size
        return json.dumps(doc).encode()

    return spoil


def _wrong_type(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
    doc[draw(st.sampled_from(FIELDS))] = draw(JUNK)
    return json.dumps(doc).encode()


def _extreme_timestamp(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
    doc["occurred_at"] = draw(TIMESTAMPS)
    return json.dumps(doc).encode()


def _missing_field(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
    del doc[draw(st.sampled_from(FIELDS[:5]))]
    return json.dumps(doc).encode()


def _unknown_type(draw: st.DrawFn, doc: dict[str, Any]) -> bytes | None:
    doc["type"] = draw(st.from_regex(r"\A[a-z]{1,12}\.[a-z_]{1,20}\Z"))
    doc["payload"] = draw(st.one_of(JUNK, st.just(doc["payload"])))
    return json.dumps(doc).encode()


def _not_an_object(draw: st.DrawFn, _doc: dict[str, Any]) -> bytes | None:
    value = draw(st.one_of(JUNK, st.binary(max_size=64).map(lambda b: b.hex())))
    return draw(st.one_of(st.just(json.dumps(value).encode()), st.binary(max_size=64)))


def _empty(draw: st.DrawFn, _doc: dict[str, Any]) -> bytes | None:
    return draw(st.sampled_from([b"", None, b" ", b"null"]))


SPOILERS: dict[str, Spoiler] = {
    "deep_nesting": _deep_nesting,
    "huge_value": _huge_value,
    "invalid_utf8": _invalid_utf8,
    "oversized_message_id": _oversized("message_id"),
    "oversized_account_id": _oversized("account_id"),
    "wrong_type": _wrong_type,
    "extreme_timestamp": _extreme_timestamp,
    "missing_field": _missing_field,
    "unknown_type": _unknown_type,
    "not_an_object": _not_an_object,
    "empty": _empty,
}


@st.composite
def _spoiled(draw: st.DrawFn, topic: str, account_id: str, kind: str) -> tuple[str, bytes | None]:
    """One record for ``topic`` spoiled the ``kind`` way: its kind and its bytes."""
    return kind, SPOILERS[kind](draw, template(topic, account_id))


def _expectation(topic: str, value: bytes | None) -> Expect | None:
    """What consuming ``value`` must end in; None if it is a valid message of a known type
    outside the inbound topics (it would act on the system, not poison it)."""
    try:
        decoded = decode(value, topic=topic)
    except Exception:  # noqa: BLE001 - anything decode cannot take is a dead letter
        return Expect.DEAD_LETTER
    if isinstance(decoded, Message) and topic not in INBOUND_TOPICS:
        return None
    return Expect.RECORDED


def _message_id(value: bytes | None) -> str | None:
    try:
        document = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    found = document.get("message_id") if isinstance(document, dict) else None
    return found if isinstance(found, str) else None


def generate(topic: str, account_id: str, per_kind: int) -> list[Poison]:
    """``per_kind`` hypothesis examples of each kind of garbage for ``topic`` (fewer when
    hypothesis finds fewer distinct ones, or when one turns out valid)."""
    drawn: list[tuple[str, bytes | None]] = []
    for kind in SPOILERS:

        @settings(
            max_examples=per_kind,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(_spoiled(topic, account_id, kind))
        def collect(example: tuple[str, bytes | None]) -> None:
            drawn.append(example)

        collect()
    found = []
    for kind, value in drawn:
        expect = _expectation(topic, value)
        if expect is not None:
            found.append(Poison(topic, kind, value, expect, _message_id(value)))
    return found
