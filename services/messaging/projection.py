"""messaging's projection of the enrollments: what the sender re-checks at send time.

Projected from the enrollment events (``enrollment_changes``); pure, no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

from shared.contracts import RecordRef

EnrollmentKey = tuple[str, uuid.UUID]
"""(account id, enrollment id): enrollment ids are only ever compared within an account."""


class EnrollmentStatus(StrEnum):
    """Messaging's view of an enrollment, projected from the enrollment events."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    EXITED = "exited"

    @property
    def ended(self) -> bool:
        return self in (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED)


class EnrollmentChange(StrEnum):
    """The enrollment events the projection follows, by their contract type."""

    ENROLLED = "enrollment.enrolled"
    PAUSED = "enrollment.paused"
    RESUMED = "enrollment.resumed"
    COMPLETED = "enrollment.completed"
    EXITED = "enrollment.exited"
    REVOKED = "enrollment.dispatch_revoked"
    """An exit was decided while a step was granted: the enrollment is ending, so nothing
    of it is sent any more (the exit itself commits once the send's outcome is in)."""


_STATUS_AFTER = {
    EnrollmentChange.ENROLLED: EnrollmentStatus.ACTIVE,
    EnrollmentChange.PAUSED: EnrollmentStatus.PAUSED,
    EnrollmentChange.RESUMED: EnrollmentStatus.ACTIVE,
    EnrollmentChange.COMPLETED: EnrollmentStatus.COMPLETED,
    EnrollmentChange.EXITED: EnrollmentStatus.EXITED,
    EnrollmentChange.REVOKED: EnrollmentStatus.EXITED,
}


def next_status(current: EnrollmentStatus | None, change: EnrollmentChange) -> EnrollmentStatus:
    """The projected status after ``change``. An ended enrollment never comes back.

    Whichever of exit and completion is seen first is final, and a late ``enrolled`` (the
    projection may start from any point of the topic) does not undo a pause either.
    """
    if current is not None and current.ended:
        return current
    if change is EnrollmentChange.ENROLLED and current is not None:
        return current
    return _STATUS_AFTER[change]


@dataclass(frozen=True, slots=True)
class EnrollmentView:
    """One row of the enrollment projection: what the sender re-checks at send time."""

    enrollment_id: uuid.UUID
    account_id: str
    workflow_id: str
    workflow_version: int
    record: RecordRef
    status: EnrollmentStatus
    recipient_email: str | None
    recipient_phone: str | None = None

    @property
    def key(self) -> EnrollmentKey:
        return (self.account_id, self.enrollment_id)


@dataclass(frozen=True, slots=True)
class EnrollmentSeen:
    """What one enrollment event tells the projection."""

    change: EnrollmentChange
    enrollment_id: uuid.UUID
    account_id: str
    workflow_id: str
    workflow_version: int
    record: RecordRef
    email: str | None = None
    """The contact's address, which only ``enrollment.enrolled`` carries."""
    phone: str | None = None
    """The contact's phone number (E.164), which only ``enrollment.enrolled`` carries."""

    @property
    def key(self) -> EnrollmentKey:
        return (self.account_id, self.enrollment_id)


def project(current: EnrollmentView | None, seen: EnrollmentSeen) -> EnrollmentView:
    """The projection row after ``seen``. An existing row keeps what it was created with
    (only status and recipient change), and a known address is never forgotten."""
    status = next_status(current.status if current else None, seen.change)
    recipient = seen.email or (current.recipient_email if current else None)
    phone = seen.phone or (current.recipient_phone if current else None)
    if current is not None:
        return replace(current, status=status, recipient_email=recipient, recipient_phone=phone)
    return EnrollmentView(
        enrollment_id=seen.enrollment_id,
        account_id=seen.account_id,
        workflow_id=seen.workflow_id,
        workflow_version=seen.workflow_version,
        record=seen.record,
        status=status,
        recipient_email=recipient,
        recipient_phone=phone,
    )
