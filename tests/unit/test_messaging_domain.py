"""messaging's pure decisions: send or cancel, the Message-ID, the enrollment projection.
Retries and failures of sends are in test_messaging_retries."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.messaging.domain import (
    Cancel,
    Cancelled,
    ClaimedSend,
    Defer,
    Deliver,
    Send,
    WorkflowStep,
    cancel_event_id,
    decide_send,
    orphaned,
    pending_send,
    provider_message_id,
    render_subject,
    send_event_id,
    steps_of,
)
from services.messaging.projection import (
    EnrollmentChange,
    EnrollmentSeen,
    EnrollmentStatus,
    next_status,
    project,
)
from shared.contracts import RecordRef, RecordType
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel
from shared.contracts.workflow import Step, WorkflowDefinition

pytestmark = pytest.mark.unit

ENROLLMENT = uuid.UUID("6f1c2b3a-0000-4000-8000-000000000001")
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def a_send(channel: Channel = Channel.EMAIL, attempts: int = 0) -> Send:
    return Send(
        enrollment_id=ENROLLMENT,
        step_index=2,
        account_id="acme",
        workflow_id="wf-1",
        workflow_version=1,
        record=CONTACT,
        step_id="s-3",
        channel=channel,
        sender="me@acme.test",
        subject="Hello",
        body="Hi there",
        provider_message_id=provider_message_id(ENROLLMENT, 2, "acme.test"),
        attempts=attempts,
    )


DISPATCH = uuid.UUID("6f1c2b3a-0000-4000-8000-0000000000d1")
LEASE_UNTIL = NOW + timedelta(seconds=120)


def claimed(
    status: EnrollmentStatus,
    *,
    channel: Channel = Channel.EMAIL,
    email: str | None = "ada@example.com",
    phone: str | None = None,
    lease_until: datetime | None = LEASE_UNTIL,
) -> ClaimedSend:
    send = replace(
        a_send(channel),
        dispatch_id=DISPATCH if lease_until else None,
        lease_until=lease_until,
    )
    return ClaimedSend(
        send=send, enrollment_status=status, recipient_email=email, recipient_phone=phone
    )


# --- send or cancel at send time ---


def test_an_active_enrollment_with_an_address_is_sent_to_that_address() -> None:
    assert decide_send(claimed(EnrollmentStatus.ACTIVE), now=NOW) == Deliver("ada@example.com")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (EnrollmentStatus.EXITED, CancelReason.ENROLLMENT_EXITED),
        (EnrollmentStatus.COMPLETED, CancelReason.ENROLLMENT_COMPLETED),
        (EnrollmentStatus.PAUSED, CancelReason.ENROLLMENT_PAUSED),
    ],
)
def test_an_enrollment_that_is_not_active_cancels_the_send(
    status: EnrollmentStatus, reason: CancelReason
) -> None:
    assert decide_send(claimed(status), now=NOW) == Cancel(reason)


def test_the_enrollment_status_wins_over_a_missing_address() -> None:
    # An exited contact without an email is reported as exited: that is why it stopped.
    assert decide_send(claimed(EnrollmentStatus.EXITED, email=None), now=NOW) == Cancel(
        CancelReason.ENROLLMENT_EXITED
    )


@pytest.mark.parametrize("email", [None, ""])
def test_an_email_step_without_a_recipient_is_cancelled(email: str | None) -> None:
    assert decide_send(claimed(EnrollmentStatus.ACTIVE, email=email), now=NOW) == Cancel(
        CancelReason.NO_RECIPIENT
    )


def test_an_sms_step_goes_to_the_contacts_phone_number() -> None:
    decision = decide_send(
        claimed(EnrollmentStatus.ACTIVE, channel=Channel.SMS, phone="+14155550123"), now=NOW
    )
    assert decision == Deliver("+14155550123")


@pytest.mark.parametrize("phone", [None, ""])
def test_an_sms_step_without_a_phone_number_is_cancelled(phone: str | None) -> None:
    sms = claimed(EnrollmentStatus.ACTIVE, channel=Channel.SMS, phone=phone)
    decision = decide_send(sms, now=NOW)
    assert decision == Cancel(CancelReason.NO_RECIPIENT)


def test_chat_steps_are_addressed_by_the_record() -> None:
    decision = decide_send(
        claimed(EnrollmentStatus.ACTIVE, channel=Channel.CHAT, email=None), now=NOW
    )
    assert decision == Deliver("contact:c-1")


# --- the grant's lease ---


def test_a_send_is_delivered_until_the_last_instant_before_its_lease() -> None:
    just_before = LEASE_UNTIL - timedelta(microseconds=1)
    assert decide_send(claimed(EnrollmentStatus.ACTIVE), now=just_before) == Deliver(
        "ada@example.com"
    )


@pytest.mark.parametrize("late", [timedelta(0), timedelta(hours=1)])
def test_a_send_whose_lease_has_lapsed_is_deferred_not_delivered(late: timedelta) -> None:
    decision = decide_send(claimed(EnrollmentStatus.ACTIVE), now=LEASE_UNTIL + late)
    assert decision == Defer(DISPATCH, LEASE_UNTIL)


def test_a_send_queued_before_grants_has_no_lease_to_lapse() -> None:
    late = NOW + timedelta(days=1)
    decision = decide_send(claimed(EnrollmentStatus.ACTIVE, lease_until=None), now=late)
    assert decision == Deliver("ada@example.com")


@pytest.mark.parametrize(
    ("status", "email", "reason"),
    [
        (EnrollmentStatus.EXITED, "ada@example.com", CancelReason.ENROLLMENT_EXITED),
        (EnrollmentStatus.ACTIVE, None, CancelReason.NO_RECIPIENT),
    ],
)
def test_a_send_that_can_never_go_out_is_cancelled_even_after_its_lease(
    status: EnrollmentStatus, email: str | None, reason: CancelReason
) -> None:
    """A cancel starts no call, so the lapsed lease does not hold it back."""
    late = LEASE_UNTIL + timedelta(minutes=1)
    assert decide_send(claimed(status, email=email), now=late) == Cancel(reason)


def test_a_revoke_projects_the_enrollment_as_exited_for_good() -> None:
    assert next_status(EnrollmentStatus.ACTIVE, EnrollmentChange.REVOKED) is (
        EnrollmentStatus.EXITED
    )
    assert next_status(EnrollmentStatus.PAUSED, EnrollmentChange.REVOKED) is (
        EnrollmentStatus.EXITED
    )
    assert next_status(EnrollmentStatus.EXITED, EnrollmentChange.RESUMED) is (
        EnrollmentStatus.EXITED
    )


# --- Message-ID and rendering ---


def test_the_message_id_names_the_enrollment_and_step_in_angle_brackets() -> None:
    assert provider_message_id(ENROLLMENT, 2, "mail.acme.test") == (
        "<6f1c2b3a-0000-4000-8000-000000000001.2@mail.acme.test>"
    )


def test_the_message_id_is_the_same_every_time_and_differs_per_step() -> None:
    first = provider_message_id(ENROLLMENT, 0, "d.test")
    assert first == provider_message_id(ENROLLMENT, 0, "d.test")
    assert first != provider_message_id(ENROLLMENT, 1, "d.test")
    assert first != provider_message_id(uuid.uuid4(), 0, "d.test")


@pytest.mark.parametrize(
    ("subject", "rendered"),
    [
        ("Quick question", "Quick question"),
        ("Line one\r\nBcc: victim@example.com", "Line one Bcc: victim@example.com"),
        (None, ""),
    ],
)
def test_a_subject_is_one_header_line(subject: str | None, rendered: str) -> None:
    assert render_subject(subject) == rendered


def step(sender: str | None) -> WorkflowStep:
    return WorkflowStep(
        account_id="acme",
        workflow_id="wf-1",
        version=3,
        step_index=1,
        step_id="s-2",
        channel=Channel.EMAIL,
        subject="Follow\nup",
        body="Body {first_name}",
        sender=sender,
    )


def test_a_pending_send_is_rendered_from_its_workflow_version() -> None:
    cause, correlation = uuid.uuid4(), uuid.uuid4()
    send = pending_send(
        step("rep@acme.test"),
        enrollment_id=ENROLLMENT,
        record=CONTACT,
        message_id_domain="acme.test",
        default_sender="default@acme.test",
        cause_message_id=cause,
        correlation_id=correlation,
        dispatch_id=DISPATCH,
        lease_until=LEASE_UNTIL,
    )
    assert (send.dispatch_id, send.lease_until) == (DISPATCH, LEASE_UNTIL)
    assert send.provider_message_id == provider_message_id(ENROLLMENT, 1, "acme.test")
    assert (send.workflow_version, send.step_index, send.step_id) == (3, 1, "s-2")
    assert (send.sender, send.subject, send.body) == (
        "rep@acme.test",
        "Follow up",
        "Body {first_name}",
    )
    assert (send.cause_message_id, send.correlation_id, send.attempts) == (cause, correlation, 0)


def test_a_step_without_a_sender_uses_the_default_sender() -> None:
    send = pending_send(
        step(None),
        enrollment_id=ENROLLMENT,
        record=CONTACT,
        message_id_domain="acme.test",
        default_sender="default@acme.test",
        cause_message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        dispatch_id=None,
        lease_until=None,
    )
    assert send.sender == "default@acme.test"


# --- the enrollment projection ---


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (EnrollmentChange.ENROLLED, EnrollmentStatus.ACTIVE),
        (EnrollmentChange.PAUSED, EnrollmentStatus.PAUSED),
        (EnrollmentChange.RESUMED, EnrollmentStatus.ACTIVE),
        (EnrollmentChange.COMPLETED, EnrollmentStatus.COMPLETED),
        (EnrollmentChange.EXITED, EnrollmentStatus.EXITED),
    ],
)
def test_a_first_event_sets_the_status(change: EnrollmentChange, status: EnrollmentStatus) -> None:
    assert next_status(None, change) is status


def test_pause_and_resume_move_a_live_enrollment() -> None:
    assert next_status(EnrollmentStatus.ACTIVE, EnrollmentChange.PAUSED) is EnrollmentStatus.PAUSED
    assert next_status(EnrollmentStatus.PAUSED, EnrollmentChange.RESUMED) is EnrollmentStatus.ACTIVE
    assert next_status(EnrollmentStatus.PAUSED, EnrollmentChange.EXITED) is EnrollmentStatus.EXITED


@pytest.mark.parametrize("ended", [EnrollmentStatus.EXITED, EnrollmentStatus.COMPLETED])
@pytest.mark.parametrize("change", list(EnrollmentChange))
def test_an_ended_enrollment_never_comes_back(
    ended: EnrollmentStatus, change: EnrollmentChange
) -> None:
    assert next_status(ended, change) is ended


def test_a_late_enrolled_does_not_undo_a_pause() -> None:
    assert (
        next_status(EnrollmentStatus.PAUSED, EnrollmentChange.ENROLLED) is EnrollmentStatus.PAUSED
    )


def test_only_exited_and_completed_are_ended() -> None:
    assert {s for s in EnrollmentStatus if s.ended} == {
        EnrollmentStatus.EXITED,
        EnrollmentStatus.COMPLETED,
    }


# --- event ids ---


def test_cancel_ids_under_a_grant_differ_by_reason_and_grant_and_repeat_alike() -> None:
    """A step cancelled for a pause, re-armed by a new grant, then revoked: consumers drop
    a message id they have seen, so the revoke's answer must not reuse the pause's id."""

    def cancel_id(reason: CancelReason, dispatch: uuid.UUID | None = DISPATCH) -> uuid.UUID:
        return cancel_event_id("acme", ENROLLMENT, 2, reason=reason, dispatch_id=dispatch)

    paused, revoked = CancelReason.ENROLLMENT_PAUSED, CancelReason.DISPATCH_REVOKED
    assert cancel_id(revoked) == cancel_id(revoked)
    assert cancel_id(revoked) != cancel_id(paused)
    assert cancel_id(revoked) != cancel_id(revoked, uuid.uuid4())
    # A send queued before grants keeps the id it always had.
    assert cancel_id(paused, None) == send_event_id("message.cancelled", a_send())


@pytest.mark.parametrize("kind", ["message.sent", "message.cancelled"])
def test_send_event_ids_are_deterministic_and_differ_across_accounts(kind: str) -> None:
    ours = a_send()
    theirs = replace(ours, account_id="other-account")  # same enrollment id and step
    assert send_event_id(kind, ours) == send_event_id(kind, a_send())
    assert send_event_id(kind, ours) != send_event_id(kind, theirs)
    assert send_event_id(kind, ours) != send_event_id(kind, replace(ours, step_index=1))


# --- the projection row, and what a send's outcome records ---


def seen(change: EnrollmentChange, email: str | None = None) -> EnrollmentSeen:
    return EnrollmentSeen(change, ENROLLMENT, "acme", "wf-1", 1, CONTACT, email)


def test_a_first_event_creates_the_row_and_later_ones_keep_what_it_was_created_with() -> None:
    first = project(None, seen(EnrollmentChange.PAUSED))
    assert (first.status, first.recipient_email, first.workflow_id) == (
        EnrollmentStatus.PAUSED,
        None,
        "wf-1",
    )
    later = replace(seen(EnrollmentChange.ENROLLED, "ada@example.com"), workflow_id="other")
    assert project(first, later) == replace(first, recipient_email="ada@example.com")
    assert project(first, seen(EnrollmentChange.RESUMED)).recipient_email is None


def test_a_known_address_is_never_forgotten() -> None:
    known = project(None, seen(EnrollmentChange.ENROLLED, "ada@example.com"))
    again = project(known, seen(EnrollmentChange.ENROLLED, None))
    assert again.recipient_email == "ada@example.com"


def test_a_known_phone_number_is_kept_like_the_address() -> None:
    enrolled = replace(seen(EnrollmentChange.ENROLLED), phone="+14155550123")
    known = project(None, enrolled)
    assert known.recipient_phone == "+14155550123"
    assert project(known, seen(EnrollmentChange.PAUSED)).recipient_phone == "+14155550123"


def test_the_steps_of_a_version_keep_their_order_and_content() -> None:
    definition = WorkflowDefinition(
        workflow_id="wf-1",
        name="Welcome",
        record_type=RecordType.CONTACT,
        steps=(Step(step_id="a", subject="Hi", body="1"), Step(step_id="b", body="2")),
    )
    steps = steps_of("acme", 3, definition)
    assert [(s.step_index, s.step_id, s.version, s.subject) for s in steps] == [
        (0, "a", 3, "Hi"),
        (1, "b", 3, None),
    ]


def test_an_orphan_is_cancelled_for_having_no_recipient() -> None:
    assert orphaned(a_send()) == Cancelled(a_send(), CancelReason.NO_RECIPIENT)
