"""The committed AsyncAPI documents (``deploy/asyncapi/``) are what the code generates,
and each shows every topic its service reads or writes with every message type the topic
carries."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.asyncapi import SERVICES, to_yaml
from shared.contracts import MESSAGES_BY_TOPIC
from shared.runtime import ServiceSpec

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "deploy" / "asyncapi"
REGENERATE = "python -m shared.asyncapi deploy/asyncapi (or `make asyncapi`)"


def _generate(outdir: Path, **env: str) -> None:
    # A fresh interpreter: the apps read their settings when imported, and this process
    # may have imported them already (with another topic namespace).
    subprocess.run(
        [sys.executable, "-m", "shared.asyncapi", str(outdir)],
        cwd=REPO,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("asyncapi")
    # Settings that must not reach the documents.
    _generate(
        outdir,
        OFFRAMP_TOPIC_NAMESPACE="elsewhere.",
        KAFKA_BOOTSTRAP_SERVERS="elsewhere:9092",
        PYTHONHASHSEED="1",
    )
    return outdir


def _files(directory: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.suffix in {".yaml", ".json"}
    }


def test_committed_documents_are_up_to_date(generated: Path) -> None:
    expected = _files(generated)
    assert sorted(expected) == sorted(
        f"{service}.{ext}" for service in SERVICES for ext in ("yaml", "json")
    )
    committed = _files(COMMITTED) if COMMITTED.is_dir() else {}
    assert sorted(committed) == sorted(expected), f"stale or missing files; run {REGENERATE}"
    outdated = [name for name, content in expected.items() if committed[name] != content]
    assert not outdated, f"{outdated} differ from what the code generates; run {REGENERATE}"


def test_generation_is_deterministic(generated: Path, tmp_path: Path) -> None:
    _generate(tmp_path, PYTHONHASHSEED="2")
    assert _files(tmp_path) == _files(generated)


def test_yaml_is_the_json_document() -> None:
    # PyYAML is no dependency, so the emitter is pinned by its output on tricky values.
    doc = {
        "plain": ["offramp.commands.v1", "$ref", "a/b_c-d@e"],
        "quoted": ["yes", "Off", "", "1.0", "a: b", "#/x", " x", "x\ny", "\x7f"],
        "numbers": [0, -1, 1.5, 1e-05, None, True],
        "empty": [{}, []],
        "nested": [[1, [2]], {"k": {"v": 1}, "w": 2}],
        "key:colon": {},
    }
    assert to_yaml(doc).split("\n", 1)[1] == (
        "plain:\n"
        "  - offramp.commands.v1\n"
        "  - $ref\n"
        "  - a/b_c-d@e\n"
        "quoted:\n"
        '  - "yes"\n'
        '  - "Off"\n'
        '  - ""\n'
        '  - "1.0"\n'
        '  - "a: b"\n'
        '  - "#/x"\n'
        '  - " x"\n'
        '  - "x\\ny"\n'
        '  - "\\u007f"\n'
        "numbers:\n"
        "  - 0\n"
        "  - -1\n"
        "  - 1.5\n"
        "  - 1.0e-05\n"
        "  - null\n"
        "  - true\n"
        "empty:\n"
        "  - {}\n"
        "  - []\n"
        "nested:\n"
        "  - - 1\n"
        "    - - 2\n"
        "  - k:\n"
        "      v: 1\n"
        "    w: 2\n"
        '"key:colon": {}\n'
    )


# --- what the documents say -------------------------------------------------------------


def _spec(service: str) -> ServiceSpec[Any, Any]:
    spec = importlib.import_module(f"services.{service}.app").SPEC
    assert isinstance(spec, ServiceSpec)
    return spec


def _document(service: str) -> dict[str, Any]:
    path = COMMITTED / f"{service}.json"
    assert path.exists(), f"{path} is missing; run {REGENERATE}"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _resolve(doc: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/"), reference
    node: Any = doc
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _channels(doc: dict[str, Any], action: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(topic, channel) of every operation with ``action`` (receive or send)."""
    for operation in doc.get("operations", {}).values():
        if operation["action"] == action:
            channel = _resolve(doc, operation["channel"]["$ref"])
            yield channel["address"], channel


def _message_types(doc: dict[str, Any], channel: dict[str, Any]) -> set[str]:
    """The ``type`` of every message schema a channel's payloads reach."""
    found: set[str] = set()
    seen: set[str] = set()

    def walk(schema: Any) -> None:
        if not isinstance(schema, dict):
            return
        if "$ref" in schema:
            if schema["$ref"] not in seen:
                seen.add(schema["$ref"])
                walk(_resolve(doc, schema["$ref"]))
            return
        message_type = schema.get("properties", {}).get("type", {}).get("const")
        if isinstance(message_type, str):
            found.add(message_type)  # an envelope: its fields are no further messages
            return
        for keyword in ("anyOf", "oneOf", "allOf"):
            for option in schema.get(keyword, ()):
                walk(option)
        walk(schema.get("items"))

    for message in channel.get("messages", {}).values():
        walk(_resolve(doc, message["$ref"]).get("payload") if "$ref" in message else message)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_topic_is_a_channel(service: str) -> None:
    spec, doc = _spec(service), _document(service)
    received = {topic for topic, _ in _channels(doc, "receive")}
    sent = {topic for topic, _ in _channels(doc, "send")}
    assert received == set(spec.consumes)
    assert sent == set(spec.publishes)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("action", ["receive", "send"])
def test_every_message_type_of_a_topic_is_documented(service: str, action: str) -> None:
    spec, doc = _spec(service), _document(service)
    topics = spec.consumes if action == "receive" else spec.publishes
    documented: dict[str, set[str]] = {}
    for topic, channel in _channels(doc, action):
        documented.setdefault(topic, set()).update(_message_types(doc, channel))
    missing = {
        topic: sorted({model.TYPE for model in MESSAGES_BY_TOPIC[topic]} - documented[topic])
        for topic in topics
        if topic in documented
    }
    assert not {topic: types for topic, types in missing.items() if types}, (
        f"{service}: message types its {action} channels do not document (a subscriber "
        "whose body parameter is NoCast documents an EmptyPayload: FastStream leaves "
        "custom fields out of the schema)"
    )
