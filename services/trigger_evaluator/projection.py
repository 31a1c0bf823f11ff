"""Pure folding of a run of enrollment events into one change per enrollment.

No I/O here. The repository writes a whole run of ``enrollment.*`` events in one
statement; this says what that statement must write so the result is exactly what
applying the events one by one would leave:

- an event only changes an enrollment of its own account (the first account to write an
  enrollment id owns it for good; any other account's events for that id change nothing);
- ``enrollment.enrolled`` sets the contact details, the last one wins, and creates the
  enrollment as active if nothing else did; the enrollment began when the first
  ``enrollment.enrolled`` says it occurred (``enrolled_at``, the earliest seen wins);
- a lifecycle event sets the status, but ended is final: once an exit or a completion
  was seen, no later event revives the enrollment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.trigger_evaluator.domain import (
    STATUS_AFTER_EVENT,
    EnrollmentStatus,
    company_domain_key,
)
from shared.contracts import ActorKind
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentRef,
    EnrollmentResumed,
)

EnrollmentEvent = (
    EnrollmentEnrolled
    | EnrollmentPaused
    | EnrollmentResumed
    | EnrollmentExited
    | EnrollmentCompleted
)
"""The events that maintain trigger-evaluator's view of enrollments."""

ENROLLMENT_EVENTS: tuple[type[EnrollmentEvent], ...] = (
    EnrollmentEnrolled,
    EnrollmentPaused,
    EnrollmentResumed,
    EnrollmentExited,
    EnrollmentCompleted,
)


@dataclass(frozen=True, slots=True)
class ContactKeys:
    """What matching needs of an enrolled contact (from ``enrollment.enrolled``)."""

    email: str | None
    aliases: tuple[str, ...]
    company_domain: str | None
    enrolled_by_user_id: str | None


@dataclass(frozen=True, slots=True)
class EnrollmentChange:
    """What one account's events of a run do to one enrollment, folded.

    ``ref`` comes from the first event (what a new row is created with). ``status`` is
    the status the lifecycle events leave, ended if any of them ended the enrollment, or
    None when the run has none. ``contact`` is the last ``enrollment.enrolled``'s, or None
    when the run has none; ``enrolled_at`` the earliest of them.
    """

    account_id: str
    ref: EnrollmentRef
    status: EnrollmentStatus | None = None
    contact: ContactKeys | None = None
    enrolled_at: datetime | None = None

    @property
    def enrollment_id(self) -> uuid.UUID:
        return self.ref.enrollment_id

    def then(self, event: EnrollmentEvent) -> EnrollmentChange:
        """This change followed by ``event`` (of the same account and enrollment)."""
        if isinstance(event, EnrollmentEnrolled):
            # The enrollment began when enrollment says it was enrolled: the event's time
            # (the payload has no field of its own).
            began = event.occurred_at
            if self.enrolled_at is not None:
                began = min(began, self.enrolled_at)
            return EnrollmentChange(
                self.account_id, self.ref, self.status, contact_keys(event), began
            )
        if self.status is EnrollmentStatus.ENDED:
            return self
        return EnrollmentChange(
            self.account_id,
            self.ref,
            STATUS_AFTER_EVENT[event.type],
            self.contact,
            self.enrolled_at,
        )


def contact_keys(event: EnrollmentEnrolled) -> ContactKeys:
    """The matching keys ``event`` carries: addresses, company domain, enrolling user."""
    enrolled = event.payload
    contact = enrolled.contact
    actor = enrolled.actor
    return ContactKeys(
        email=contact.email if contact else None,
        aliases=tuple(contact.aliases) if contact else (),
        company_domain=company_domain_key(contact.company_domain) if contact else None,
        enrolled_by_user_id=actor.id if actor.kind is ActorKind.USER else None,
    )


def fold_enrollment_events(events: Iterable[EnrollmentEvent]) -> list[EnrollmentChange]:
    """One change per (enrollment, account) of ``events``, in order of first appearance.

    Two accounts' events for one enrollment id are two changes of two enrollments: an id
    is only ever compared within its account.
    """
    changes: dict[tuple[uuid.UUID, str], EnrollmentChange] = {}
    for event in events:
        key = (event.payload.enrollment_id, event.account_id)
        known = changes.get(key)
        if known is None:
            known = EnrollmentChange(event.account_id, event.payload)
        changes[key] = known.then(event)
    return list(changes.values())
