"""Folding a run of enrollment events into one write per enrollment (``projection``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.trigger_evaluator.domain import (
    EnrollmentStatus,
)
from services.trigger_evaluator.projection import (
    ContactKeys,
    EnrollmentChange,
    EnrollmentEvent,
    fold_enrollment_events,
)
from shared.contracts import (
    SYSTEM_ACTOR,
    Actor,
    ActorKind,
)
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource
from shared.contracts.events import (
    CompletedPayload,
    EnrolledPayload,
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    ExitedPayload,
    PausedPayload,
    ResumedPayload,
)
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.trigger_views import (
    CONTACT,
)

pytestmark = pytest.mark.unit


# Folding a run of enrollment events into one write per enrollment (``projection``).

ENROLLMENT_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
USER = Actor(kind=ActorKind.USER, id="u-1")


def ref() -> dict[str, Any]:
    return {
        "enrollment_id": ENROLLMENT_ID,
        "workflow_id": "onboarding",
        "workflow_version": 3,
        "record": CONTACT,
    }


def enrolled_event(
    email: str = "c-1@acme.com", *, account_id: str = ACCOUNT, actor: Actor = USER
) -> EnrollmentEnrolled:
    return EnrollmentEnrolled.create(
        account_id=account_id,
        payload=EnrolledPayload(
            **ref(),
            contact=ContactDetails(
                email=email, aliases=("c.one@acme.com",), company_domain="ACME.com"
            ),
            actor=actor,
        ),
    )


def paused_event(account_id: str = ACCOUNT) -> EnrollmentPaused:
    return EnrollmentPaused.create(
        account_id=account_id, payload=PausedPayload(**ref(), reason="manual", actor=USER)
    )


def resumed_event(account_id: str = ACCOUNT) -> EnrollmentResumed:
    return EnrollmentResumed.create(
        account_id=account_id, payload=ResumedPayload(**ref(), actor=USER)
    )


def exited_event(account_id: str = ACCOUNT) -> EnrollmentExited:
    return EnrollmentExited.create(
        account_id=account_id,
        payload=ExitedPayload(
            **ref(),
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=USER,
            steps_completed=1,
        ),
    )


def completed_event() -> EnrollmentCompleted:
    return EnrollmentCompleted.create(
        account_id=ACCOUNT, payload=CompletedPayload(**ref(), steps_completed=2)
    )


ALICE_KEYS = ContactKeys(
    email="c-1@acme.com",
    aliases=("c.one@acme.com",),
    company_domain="acme.com",
    enrolled_by_user_id="u-1",
)


@pytest.mark.parametrize(
    ("events", "status", "contact"),
    [
        pytest.param([enrolled_event()], None, ALICE_KEYS, id="enrolled"),
        pytest.param([paused_event()], EnrollmentStatus.PAUSED, None, id="lifecycle-only"),
        pytest.param(
            [enrolled_event(), exited_event()], EnrollmentStatus.ENDED, ALICE_KEYS, id="then-exit"
        ),
        pytest.param(
            [exited_event(), enrolled_event()], EnrollmentStatus.ENDED, ALICE_KEYS, id="exit-first"
        ),
        pytest.param(
            [completed_event(), resumed_event(), paused_event()],
            EnrollmentStatus.ENDED,
            None,
            id="ended-is-final",
        ),
        pytest.param(
            [paused_event(), resumed_event()], EnrollmentStatus.ACTIVE, None, id="last-status"
        ),
    ],
)
def test_a_run_of_one_enrollments_events_folds_into_one_change(
    events: list[EnrollmentEvent], status: EnrollmentStatus | None, contact: ContactKeys | None
) -> None:
    (change,) = fold_enrollment_events(events)

    assert change.enrollment_id == ENROLLMENT_ID
    assert change.account_id == ACCOUNT
    assert (change.status, change.contact) == (status, contact)


def test_the_last_enrolled_gives_the_contact_and_a_system_actor_no_enrolling_user() -> None:
    (change,) = fold_enrollment_events(
        [enrolled_event("old@acme.com"), enrolled_event(actor=SYSTEM_ACTOR)]
    )

    assert change.contact == ContactKeys(
        email="c-1@acme.com",
        aliases=("c.one@acme.com",),
        company_domain="acme.com",
        enrolled_by_user_id=None,
    )


def test_two_accounts_claiming_one_enrollment_id_fold_apart_in_order_of_appearance() -> None:
    enrolled = enrolled_event()
    changes = fold_enrollment_events(
        [paused_event("other"), enrolled, exited_event("other"), resumed_event()]
    )

    assert [(c.account_id, c.status) for c in changes] == [
        ("other", EnrollmentStatus.ENDED),
        (ACCOUNT, EnrollmentStatus.ACTIVE),
    ]
    assert changes[1] == EnrollmentChange(
        ACCOUNT, changes[1].ref, EnrollmentStatus.ACTIVE, ALICE_KEYS, enrolled.occurred_at
    )
    assert changes[0].enrolled_at is None  # no enrollment.enrolled: not known to have begun


def test_an_enrollment_began_at_its_earliest_enrolled_event() -> None:
    early, late = enrolled_event("old@acme.com"), enrolled_event()
    late = late.model_copy(update={"occurred_at": early.occurred_at + timedelta(minutes=5)})

    (change,) = fold_enrollment_events([late, early])

    assert change.enrolled_at == early.occurred_at
    assert change.contact is not None
    assert change.contact.email == "old@acme.com"  # contact details: the last one wins
