"""Builders of the enrollment events other services consume (scheduler, messaging,
trigger-evaluator tests build their input with these)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    CompletedPayload,
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentStepScheduled,
    ExitedPayload,
    PausedPayload,
    StepScheduledPayload,
)
from shared.contracts.inbound import Channel

ACCOUNT = "acme-account"
OTHER_ACCOUNT = "globex-account"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
USER = Actor(kind=ActorKind.USER, id="u-1")


def ref(enrollment_id: uuid.UUID, *, workflow_id: str = "onboarding") -> dict[str, Any]:
    return {
        "enrollment_id": enrollment_id,
        "workflow_id": workflow_id,
        "workflow_version": 1,
        "record": RecordRef(type=RecordType.CONTACT, id="c-1"),
    }


def step_scheduled(
    enrollment_id: uuid.UUID, step_index: int = 0, due_at: datetime = T0, account: str = ACCOUNT
) -> EnrollmentStepScheduled:
    payload = StepScheduledPayload(
        **ref(enrollment_id),
        step_index=step_index,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        due_at=due_at,
    )
    return EnrollmentStepScheduled.create(account_id=account, payload=payload)


def exited(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentExited:
    payload = ExitedPayload(
        **ref(enrollment_id),
        reason=ExitReason.REPLIED,
        source=ExitSource.TRIGGER,
        actor=USER,
        steps_completed=0,
    )
    return EnrollmentExited.create(account_id=account, payload=payload)


def completed(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentCompleted:
    payload = CompletedPayload(**ref(enrollment_id), steps_completed=2)
    return EnrollmentCompleted.create(account_id=account, payload=payload)


def paused(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentPaused:
    payload = PausedPayload(**ref(enrollment_id), reason="manual", actor=USER)
    return EnrollmentPaused.create(account_id=account, payload=payload)
