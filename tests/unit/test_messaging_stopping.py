"""messaging's pure decisions about revoked grants and ended enrollments: every revoke
gets one answer, and a row is stopped once, by the first change that reaches it."""

from __future__ import annotations

import uuid

import pytest

from services.messaging.stopping import (
    EnrollmentEnded,
    NeverQueued,
    QueuedStep,
    Revoke,
    Stopped,
    stop_unsent,
)
from shared.contracts import RecordRef, RecordType
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel

pytestmark = pytest.mark.unit

ACCOUNT = "acme"
ENROLLMENT = uuid.UUID("6f1c2b3a-0000-4000-8000-000000000001")
OTHER = uuid.UUID("6f1c2b3a-0000-4000-8000-000000000002")
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")
GRANT = uuid.UUID("6f1c2b3a-0000-4000-8000-0000000000d1")
REVOKED, EXITED = CancelReason.DISPATCH_REVOKED, CancelReason.ENROLLMENT_EXITED


def row(status: str, step_index: int = 0, enrollment_id: uuid.UUID = ENROLLMENT) -> QueuedStep:
    return QueuedStep(
        account_id=ACCOUNT,
        enrollment_id=enrollment_id,
        step_index=step_index,
        workflow_id="wf",
        workflow_version=1,
        record=CONTACT,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        status=status,
        dispatch_id=GRANT,
        cause_message_id=None,
        correlation_id=None,
    )


def revoke(step_index: int = 0, dispatch_id: uuid.UUID = GRANT) -> Revoke:
    return Revoke(
        account_id=ACCOUNT,
        enrollment_id=ENROLLMENT,
        workflow_id="wf",
        workflow_version=1,
        record=CONTACT,
        step_index=step_index,
        step_id=f"s{step_index}",
        dispatch_id=dispatch_id,
        cause_message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
    )


def ended(enrollment_id: uuid.UUID = ENROLLMENT) -> EnrollmentEnded:
    return EnrollmentEnded((ACCOUNT, enrollment_id), EXITED)


def queued(*rows: QueuedStep) -> dict[tuple[str, uuid.UUID, int], QueuedStep]:
    return {r.key: r for r in rows}


@pytest.mark.parametrize("status", ["pending", "parked"])
def test_a_revoke_stops_a_send_no_call_was_started_for(status: str) -> None:
    other_grant = uuid.uuid4()
    [stopped] = stop_unsent([revoke(dispatch_id=other_grant)], queued(row(status)))
    # The answer names the revoked grant: that is what enrollment waits on.
    assert stopped == Stopped(row(status), REVOKED, other_grant)


@pytest.mark.parametrize("status", ["sending", "sent", "failed", "cancelled"])
def test_a_revoke_of_a_send_under_way_or_finished_is_answered_by_its_outcome(
    status: str,
) -> None:
    assert stop_unsent([revoke()], queued(row(status))) == []


def test_a_revoke_of_a_step_never_queued_is_still_answered() -> None:
    change = revoke(step_index=1)
    assert stop_unsent([change], queued(row("pending"))) == [NeverQueued(change)]


def test_an_end_stops_every_unsent_step_of_that_enrollment_only() -> None:
    rows = queued(row("pending", 0), row("parked", 1), row("sending", 2), row("pending", 0, OTHER))
    assert stop_unsent([ended()], rows) == [
        Stopped(row("pending", 0), EXITED, GRANT),
        Stopped(row("parked", 1), EXITED, GRANT),
    ]


def test_a_row_is_stopped_once_by_the_first_change_that_reaches_it() -> None:
    first, again = revoke(), revoke()
    assert stop_unsent([first, ended(), again], queued(row("pending"))) == [
        Stopped(row("pending"), REVOKED, GRANT)
    ]
    assert stop_unsent([ended(), revoke()], queued(row("pending"))) == [
        Stopped(row("pending"), EXITED, GRANT)
    ]
