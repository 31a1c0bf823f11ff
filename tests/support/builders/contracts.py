"""Builders of contract messages for the contract tests (tests/unit/test_contracts*.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType
from shared.contracts.commands import Exit, ExitPayload, ExitReason, ExitSource
from shared.contracts.workflow import Step, WorkflowDefinition

ACCOUNT = "acc"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")
USER = Actor(kind=ActorKind.USER, id="u-1")
ENROLLMENT_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
REF: dict[str, Any] = {
    "enrollment_id": ENROLLMENT_ID,
    "workflow_id": "onboarding",
    "workflow_version": 1,
    "record": CONTACT,
}


def definition(**overrides: Any) -> WorkflowDefinition:
    fields: dict[str, Any] = {
        "workflow_id": "onboarding",
        "name": "Onboarding",
        "record_type": RecordType.CONTACT,
        "steps": (Step(step_id="hello", body="Hello"),),
        **overrides,
    }
    return WorkflowDefinition(**fields)


def manual_exit(**overrides: Any) -> Exit:
    fields: dict[str, Any] = {
        "record": CONTACT,
        "reason": ExitReason.MANUAL,
        "source": ExitSource.MANUAL,
        "actor": USER,
        **overrides,
    }
    return Exit.create(account_id=ACCOUNT, payload=ExitPayload(**fields), occurred_at=AT)


def document(message: Message) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(message.to_json())
    return parsed


def raw(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()
