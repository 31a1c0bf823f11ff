"""Builders of the enrollment events other services consume (scheduler, messaging,
trigger-evaluator tests build their input with these)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource
from shared.contracts.events import (
    CompletedPayload,
    EnrolledPayload,
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentStepScheduled,
    ExitedPayload,
    PausedPayload,
    ResumedPayload,
    StepScheduledPayload,
)
from shared.contracts.inbound import Channel

ACCOUNT = "acme-account"
OTHER_ACCOUNT = "globex-account"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ENROLLED_AT = T0 - timedelta(hours=1)
"""When ``enrolled`` enrollments began: before the inbound events of a case (at ``T0``)."""
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


def paused(
    enrollment_id: uuid.UUID, account: str = ACCOUNT, *, until: datetime | None = None
) -> EnrollmentPaused:
    """A pause (until ``until``: a timed one, which the scheduler resumes then)."""
    payload = PausedPayload(**ref(enrollment_id), until=until, reason="manual", actor=USER)
    return EnrollmentPaused.create(account_id=account, payload=payload)


def resumed(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentResumed:
    payload = ResumedPayload(**ref(enrollment_id), actor=USER)
    return EnrollmentResumed.create(account_id=account, payload=payload)


# Enrollment events that follow a given ``enrollment.enrolled`` (the same enrollment, its
# workflow, version and record): what trigger-evaluator's projection is built from.


def ref_of(enrollment: EnrollmentEnrolled) -> dict[str, Any]:
    p = enrollment.payload
    return {
        "enrollment_id": p.enrollment_id,
        "workflow_id": p.workflow_id,
        "workflow_version": p.workflow_version,
        "record": p.record,
    }


def enrolled(
    record_id: str,
    *,
    email: str,
    company_domain: str = "acme.com",
    aliases: tuple[str, ...] = (),
    version: int = 1,
    account: str = ACCOUNT,
    occurred_at: datetime = ENROLLED_AT,
    workflow_id: str = "onboarding",
    record_type: RecordType = RecordType.CONTACT,
) -> EnrollmentEnrolled:
    """A new enrollment of contact ``record_id`` in workflow ``onboarding`` (another
    record type has no contact details)."""
    contact = (
        ContactDetails(email=email, aliases=aliases, company_domain=company_domain)
        if record_type is RecordType.CONTACT
        else None
    )
    return EnrollmentEnrolled.create(
        account_id=account,
        occurred_at=occurred_at,
        payload=EnrolledPayload(
            enrollment_id=uuid.uuid4(),
            workflow_id=workflow_id,
            workflow_version=version,
            record=RecordRef(type=record_type, id=record_id),
            contact=contact,
            actor=USER,
        ),
    )


def exited_from(
    enrollment: EnrollmentEnrolled,
    *,
    reason: ExitReason = ExitReason.MANUAL,
    source: ExitSource = ExitSource.MANUAL,
    steps_completed: int = 0,
) -> EnrollmentExited:
    return EnrollmentExited.create(
        account_id=enrollment.account_id,
        payload=ExitedPayload(
            **ref_of(enrollment),
            reason=reason,
            source=source,
            actor=USER,
            steps_completed=steps_completed,
        ),
    )


def completed_from(enrollment: EnrollmentEnrolled) -> EnrollmentCompleted:
    payload = CompletedPayload(**ref_of(enrollment), steps_completed=1)
    return EnrollmentCompleted.create(account_id=enrollment.account_id, payload=payload)


def paused_from(enrollment: EnrollmentEnrolled) -> EnrollmentPaused:
    payload = PausedPayload(**ref_of(enrollment), reason="manual", actor=USER)
    return EnrollmentPaused.create(account_id=enrollment.account_id, payload=payload)


def resumed_from(enrollment: EnrollmentEnrolled) -> EnrollmentResumed:
    payload = ResumedPayload(**ref_of(enrollment), actor=USER)
    return EnrollmentResumed.create(account_id=enrollment.account_id, payload=payload)
