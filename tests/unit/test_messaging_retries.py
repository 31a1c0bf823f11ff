"""messaging's pure decisions about failed sends: transient failures retried with capped
backoff over a time budget, permanent refusals (hard bounce, rejected) given up at once,
how SMTP and HTTP answers are classified, and steps parked for their workflow version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import aiosmtplib
import pytest

from services.messaging.domain import (
    Attempt,
    Failed,
    GiveUp,
    RetryAt,
    RetryPolicy,
    Send,
    Sent,
    WorkflowStep,
    after_attempt,
    after_failure,
    provider_message_id,
)
from services.messaging.parking import ParkedStep, expires_before, matches, never_arrived, redrive
from services.messaging.providers import http_failure, smtp_failure
from shared.contracts import RecordRef, RecordType
from shared.contracts.events import FailureKind
from shared.contracts.inbound import Channel

pytestmark = pytest.mark.unit

ENROLLMENT = uuid.UUID("6f1c2b3a-0000-4000-8000-000000000001")
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
POLICY = RetryPolicy(budget_s=6 * 3600.0, backoff_s=2.0, backoff_max_s=300.0)


def a_send(attempts: int = 0, first_failed_at: datetime | None = None) -> Send:
    return Send(
        enrollment_id=ENROLLMENT,
        step_index=2,
        account_id="acme",
        workflow_id="wf-1",
        workflow_version=1,
        record=CONTACT,
        step_id="s-3",
        channel=Channel.EMAIL,
        sender="me@acme.test",
        subject="Hello",
        body="Hi there",
        provider_message_id=provider_message_id(ENROLLMENT, 2, "acme.test"),
        attempts=attempts,
        first_failed_at=first_failed_at,
    )


def retry(attempts_before: int, *, since: datetime | None = None, **policy: float) -> object:
    return after_failure(
        attempts_before=attempts_before,
        first_failed_at=since,
        now=NOW,
        policy=RetryPolicy(**{**{"budget_s": 6 * 3600.0}, **policy}),
    )


# --- transient failures: backoff over a time budget ---


def test_a_failed_attempt_is_retried_with_doubling_backoff() -> None:
    delays = []
    for attempts_before in range(3):
        decision = retry(attempts_before, backoff_s=2.0, backoff_max_s=300.0)
        assert isinstance(decision, RetryAt)
        delays.append(decision.at - NOW)
    assert delays == [timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=8)]


def test_the_backoff_is_capped() -> None:
    decision = retry(3, backoff_s=60.0, backoff_max_s=90.0)
    assert decision == RetryAt(NOW + timedelta(seconds=90))


def test_many_attempts_keep_the_capped_backoff_without_overflowing() -> None:
    assert retry(5000, since=NOW, backoff_max_s=300.0) == RetryAt(NOW + timedelta(seconds=300))


def test_failures_are_retried_for_the_whole_budget_not_a_number_of_attempts() -> None:
    """An SMTP relay down for two minutes is nowhere near a 6-hour budget."""
    two_minutes_ago = NOW - timedelta(minutes=2)
    assert isinstance(retry(40, since=two_minutes_ago), RetryAt)


def test_the_last_retry_falls_at_the_end_of_the_budget() -> None:
    since = NOW - timedelta(hours=6) + timedelta(seconds=30)
    assert retry(20, since=since, backoff_max_s=300.0) == RetryAt(since + timedelta(hours=6))


def test_a_spent_budget_gives_up_as_retries_exhausted() -> None:
    assert retry(20, since=NOW - timedelta(hours=6)) == GiveUp(FailureKind.RETRIES_EXHAUSTED)


def test_a_budget_spent_by_the_first_failure_gives_up_at_once() -> None:
    decision = after_failure(
        attempts_before=0, first_failed_at=None, now=NOW, policy=RetryPolicy(budget_s=0.0)
    )
    assert decision == GiveUp(FailureKind.RETRIES_EXHAUSTED)


@pytest.mark.parametrize("kind", [FailureKind.HARD_BOUNCE, FailureKind.REJECTED])
def test_a_permanent_refusal_gives_up_on_the_first_attempt(kind: FailureKind) -> None:
    decision = after_failure(
        attempts_before=0, first_failed_at=None, now=NOW, policy=POLICY, failure=kind
    )
    assert decision == GiveUp(kind)


# --- what a provider call makes of a send ---


def test_an_accepted_attempt_is_sent_to_its_recipient_at_the_time_of_acceptance() -> None:
    later = NOW + timedelta(seconds=3)
    accepted = Attempt(accepted_at=later)
    outcome = after_attempt(a_send(), "ada@example.com", accepted, now=NOW, policy=POLICY)
    assert outcome == Sent(a_send(), "ada@example.com", later)


def test_a_failed_attempt_carries_its_error_its_retry_and_its_count() -> None:
    failed = Attempt(error="relay unreachable")
    refused = Attempt(error="550", failure=FailureKind.HARD_BOUNCE)
    spent = a_send(attempts=1, first_failed_at=NOW - timedelta(hours=7))
    retried = after_attempt(a_send(), "a@b", failed, now=NOW, policy=POLICY)
    last = after_attempt(spent, "a@b", failed, now=NOW, policy=POLICY)
    at_once = after_attempt(a_send(), "a@b", refused, now=NOW, policy=POLICY)
    assert retried == Failed(
        a_send(), "relay unreachable", NOW + timedelta(seconds=2), NOW, recipient="a@b"
    )
    assert last == Failed(
        spent, "relay unreachable", None, NOW, FailureKind.RETRIES_EXHAUSTED, "a@b"
    )
    assert isinstance(last, Failed)
    assert last.attempts == 2
    assert at_once == Failed(a_send(), "550", None, NOW, FailureKind.HARD_BOUNCE, "a@b")


# --- classifying providers' answers ---


def refused(code: int, message: str) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, message, "ada@example.com")]
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (refused(550, "5.1.1 <ada@example.com>: user unknown"), FailureKind.HARD_BOUNCE),
        (refused(550, "user unknown"), FailureKind.HARD_BOUNCE),
        (refused(551, "not local"), FailureKind.HARD_BOUNCE),
        (refused(553, "5.1.3 bad destination mailbox address syntax"), FailureKind.HARD_BOUNCE),
        (refused(550, "5.7.1 relaying denied"), FailureKind.REJECTED),
        (refused(554, "transaction failed"), FailureKind.REJECTED),
        (refused(552, "5.2.2 mailbox full"), FailureKind.REJECTED),
        (aiosmtplib.SMTPDataError(554, "5.7.1 message content rejected"), FailureKind.REJECTED),
        (refused(450, "4.2.1 mailbox busy, try later"), None),
        (refused(451, "greylisted"), None),
        (aiosmtplib.SMTPDataError(451, "local error"), None),
        (aiosmtplib.SMTPConnectError("connection refused"), None),
        (aiosmtplib.SMTPServerDisconnected("reset by peer"), None),
        (aiosmtplib.SMTPTimeoutError("timed out"), None),
        # Our configuration, which an operator can fix within the budget.
        (aiosmtplib.SMTPSenderRefused(553, "sender refused", "me@acme.test"), None),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), None),
    ],
)
def test_smtp_answers_are_permanent_only_when_they_are_about_this_message(
    error: aiosmtplib.SMTPException, kind: FailureKind | None
) -> None:
    assert smtp_failure(error) is kind


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, None), (503, None), (429, None), (408, None), (400, FailureKind.REJECTED)],
)
def test_http_5xx_and_429_are_transient(status: int, kind: FailureKind | None) -> None:
    assert http_failure(status) is kind


# --- steps parked for their workflow version ---


def a_parked(step_id: str = "s-3", channel: Channel = Channel.EMAIL) -> ParkedStep:
    cause = uuid.UUID(int=7)
    return ParkedStep(
        enrollment_id=ENROLLMENT,
        step_index=2,
        account_id="acme",
        workflow_id="wf-1",
        workflow_version=4,
        record=CONTACT,
        step_id=step_id,
        channel=channel,
        provider_message_id=provider_message_id(ENROLLMENT, 2, "acme.test"),
        parked_at=NOW,
        cause_message_id=cause,
        correlation_id=cause,
    )


STEP = WorkflowStep("acme", "wf-1", 4, 2, "s-3", Channel.EMAIL, "Hi", "Body", None)


def test_a_parked_step_becomes_the_send_its_version_renders() -> None:
    send = redrive(a_parked(), STEP, message_id_domain="acme.test", default_sender="d@acme.test")
    assert (send.key, send.workflow_version, send.subject, send.sender) == (
        ("acme", ENROLLMENT, 2),
        4,
        "Hi",
        "d@acme.test",
    )
    assert send.provider_message_id == a_parked().provider_message_id
    assert (send.cause_message_id, send.correlation_id) == (uuid.UUID(int=7), uuid.UUID(int=7))


def test_a_parked_step_must_match_the_versions_step() -> None:
    assert matches(STEP, step_id="s-3", channel=Channel.EMAIL)
    assert not matches(STEP, step_id="other", channel=Channel.EMAIL)
    assert not matches(STEP, step_id="s-3", channel=Channel.SMS)


def test_a_step_parked_too_long_fails_as_rejected_with_the_reason() -> None:
    assert expires_before(NOW, max_age_s=3600) == NOW - timedelta(hours=1)
    failed = never_arrived(a_parked(), now=NOW, max_age_s=3600)
    assert failed.kind is FailureKind.REJECTED
    assert failed.reason.startswith("workflow version never arrived")
    assert "'wf-1' version 4" in failed.reason
    assert failed.failed_at == NOW
