"""``shared.quarantine`` and ``offramp quarantine`` without a database: service names,
rows as JSON, and the refusals that come before any connection."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from shared.cli import main
from shared.quarantine import QuarantinedRow, schema_of

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def row(value: bytes) -> QuarantinedRow:
    return QuarantinedRow(
        schema="messaging",
        id=7,
        topic="offramp.messages.v1",
        key="acme/contact/c-1",
        value=value,
        headers={"message-id": "m-1"},
        created_at=NOW,
        attempts=1,
        reason="MessageSizeTooLargeError()",
        quarantined_at=NOW,
    )


def test_a_service_name_is_its_schema() -> None:
    assert schema_of("trigger-evaluator") == "trigger_evaluator"
    assert schema_of("messaging") == "messaging"
    with pytest.raises(ValueError, match="schema name"):
        schema_of("messaging; DROP SCHEMA messaging")


def test_a_row_as_json_keeps_text_as_text_and_bytes_in_base64() -> None:
    text = row(b'{"a": 1}').to_json()
    assert text["value"] == '{"a": 1}'
    assert "value_base64" not in text
    assert text["value_size"] == 8
    assert text["quarantined_at"] == "2026-11-24T10:00:00+00:00"
    binary = row(b"\xff\x00").to_json()
    assert binary["value"] is None
    assert base64.b64decode(binary["value_base64"]) == b"\xff\x00"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["release", "--service", "messaging"], "--id"),
        (["release", "--service", "messaging", "--id", "1", "--all"], "one of them"),
        (["drop", "--service", "messaging", "--id", "1"], "--yes"),
        (["list", "--service", "Bad Name"], "schema name"),
    ],
)
def test_refused_before_any_connection(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["quarantine", *args]) == 2
    assert said in capsys.readouterr().err
