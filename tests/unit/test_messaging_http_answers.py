"""HTTP providers' answers in messaging's pure decisions: Retry-After read from either of
its forms and honoured by the retry schedule (never past the budget), and a provider's own
id carried to the sent outcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.messaging.domain import (
    Attempt,
    Failed,
    RetryAt,
    RetryPolicy,
    Send,
    Sent,
    after_attempt,
    after_failure,
)
from services.messaging.http_providers import retry_after_s
from shared.contracts import RecordRef, RecordType
from shared.contracts.inbound import Channel

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
POLICY = RetryPolicy(budget_s=3600.0, backoff_s=2.0, backoff_max_s=300.0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        (" 0 ", 0.0),
        ("Mon, 02 Mar 2026 09:31:00 GMT", 60.0),
        ("Mon, 02 Mar 2026 09:29:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_s(header, now=NOW) == seconds


def test_a_retry_after_longer_than_the_backoff_is_honoured() -> None:
    at = after_failure(
        attempts_before=0, first_failed_at=None, now=NOW, policy=POLICY, retry_after_s=600.0
    )
    assert at == RetryAt(NOW + timedelta(seconds=600))  # beyond the 300 s backoff cap too


def test_a_retry_after_shorter_than_the_backoff_keeps_the_backoff() -> None:
    at = after_failure(
        attempts_before=3, first_failed_at=NOW, now=NOW, policy=POLICY, retry_after_s=1.0
    )
    assert at == RetryAt(NOW + timedelta(seconds=16))


def test_a_retry_after_past_the_budget_tries_once_more_at_its_end() -> None:
    first = NOW - timedelta(minutes=50)
    at = after_failure(
        attempts_before=5, first_failed_at=first, now=NOW, policy=POLICY, retry_after_s=86400.0
    )
    assert at == RetryAt(first + timedelta(seconds=3600))


def _sms() -> Send:
    return Send(
        enrollment_id=uuid.UUID(int=1),
        step_index=1,
        account_id="acme",
        workflow_id="wf-1",
        workflow_version=1,
        record=RecordRef(type=RecordType.CONTACT, id="c-1"),
        step_id="nudge",
        channel=Channel.SMS,
        sender="+15550100",
        subject="",
        body="Ping",
        provider_message_id="<x.1@acme.test>",
    )


def test_the_providers_own_id_is_kept_on_the_sent_outcome() -> None:
    outcome = after_attempt(
        _sms(),
        "+14155550123",
        Attempt(accepted_at=NOW, provider_reference="SM1"),
        now=NOW,
        policy=POLICY,
    )
    assert outcome == Sent(_sms(), "+14155550123", NOW, "SM1")


def test_a_429_is_retried_no_sooner_than_it_asked() -> None:
    outcome = after_attempt(
        _sms(), "+14155550123", Attempt(error="429", retry_after_s=120.0), now=NOW, policy=POLICY
    )
    assert isinstance(outcome, Failed)
    assert outcome.retry_at == NOW + timedelta(seconds=120)
    assert outcome.kind is None
