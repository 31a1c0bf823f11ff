"""Builders of enrollment's domain values: workflow definitions and versions, enrollments.

The domain tests decide on them; the store contract saves and loads them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.enrollment.domain import Enrollment, Status, WorkflowVersion
from shared.contracts import RecordRef, RecordType
from shared.contracts.workflow import Step, WorkflowDefinition, WorkflowSettings

ACCOUNT = "acme-account"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")


def definition(
    *delays: int, workflow_id: str = "onboarding", **settings: Any
) -> WorkflowDefinition:
    """A contact workflow whose steps wait ``delays`` seconds each (one step by default)."""
    return WorkflowDefinition(
        workflow_id=workflow_id,
        name="Onboarding",
        record_type=RecordType.CONTACT,
        steps=tuple(
            Step(step_id=f"s{i}", body=f"Step {i}", delay_seconds=d)
            for i, d in enumerate(delays or (0,))
        ),
        settings=WorkflowSettings(**settings),
    )


def workflow(
    *delays: int, version: int = 3, account_id: str = ACCOUNT, **settings: Any
) -> WorkflowVersion:
    wf = definition(*delays, **settings)
    return WorkflowVersion(account_id, wf.workflow_id, version, wf)


def enrollment(
    status: Status = Status.ACTIVE,
    *,
    account_id: str = ACCOUNT,
    record: RecordRef = CONTACT,
    workflow_id: str = "onboarding",
    enrollment_id: uuid.UUID | None = None,
    current_step: int = 0,
    steps_completed: int = 0,
    enrolled_at: datetime = NOW - timedelta(days=30),
    next_due_at: datetime | None = None,
) -> Enrollment:
    return Enrollment(
        enrollment_id=enrollment_id or uuid.uuid4(),
        account_id=account_id,
        workflow_id=workflow_id,
        workflow_version=1,
        record=record,
        status=status,
        current_step=current_step,
        steps_completed=steps_completed,
        enrolled_at=enrolled_at,
        next_due_at=next_due_at,
    )
