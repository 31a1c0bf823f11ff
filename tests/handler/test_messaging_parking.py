"""messaging on the fake store: a granted step that arrives before its workflow version is
parked instead of blocking the consumer, queued by that version's ``workflow.applied``
(in the same run and transaction), and failed with ``message.failed`` if it waits longer
than ``OFFRAMP_PARK_MAX_S`` or its version turns out not to have that step."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.contracts import derived_message_id
from shared.contracts.events import FailureKind, MessageFailed, MessageSent
from tests.support.builders.enrollment_events import ACCOUNT, T0
from tests.support.builders.messaging_events import (
    DOMAIN,
    ENROLLMENT,
    OTHER_ENROLLMENT,
    WORKFLOW,
    enrollment_enrolled,
    granted,
    workflow_applied,
)
from tests.support.fakes.messaging_harness import MessagingHarness, messaging_harness

pytestmark = pytest.mark.handler

NOW = T0


@pytest.fixture
def h() -> MessagingHarness:
    return messaging_harness()


async def test_a_step_granted_before_its_workflow_version_is_parked_not_retried(
    h: MessagingHarness,
) -> None:
    due = granted(ENROLLMENT)
    outcome = await h.when(due)
    assert (outcome.published, outcome.rejected) == ([], [])
    row = h.parked()
    assert row.status == "parked"
    assert (row.parked.workflow_id, row.parked.workflow_version) == (WORKFLOW, 1)
    assert row.parked.provider_message_id == f"<{ENROLLMENT}.0@{DOMAIN}>"
    assert row.parked.cause_message_id == due.message_id
    assert h.store.sends == {}
    assert h.store.wakeups == 0


async def test_its_workflow_applied_queues_it_and_it_is_sent(h: MessagingHarness) -> None:
    due = granted(ENROLLMENT)
    await h.given(enrollment_enrolled(ENROLLMENT), due)
    await h.when(workflow_applied())
    assert h.store.parked == {}
    row = h.row()
    assert (row.status, row.send.subject, row.send.body) == ("pending", "Hello there", "Hi!")
    assert row.send.cause_message_id == due.message_id
    assert h.store.wakeups == 1
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    assert (sent.causation_id, sent.correlation_id) == (due.message_id, due.message_id)


async def test_step_due_and_workflow_applied_in_one_run_end_as_one_by_one(
    h: MessagingHarness,
) -> None:
    await h.when(granted(ENROLLMENT), granted(OTHER_ENROLLMENT), workflow_applied())
    assert {key[1] for key in h.store.sends} == {ENROLLMENT, OTHER_ENROLLMENT}
    assert h.store.parked == {}


async def test_a_step_due_twice_while_parked_is_parked_once(h: MessagingHarness) -> None:
    first = granted(ENROLLMENT)
    await h.when(first, granted(ENROLLMENT))
    await h.when(granted(ENROLLMENT))
    assert list(h.store.parked) == [(ACCOUNT, ENROLLMENT, 0)]
    assert h.parked().parked.cause_message_id == first.message_id


async def test_another_version_or_account_does_not_release_it(h: MessagingHarness) -> None:
    await h.given(granted(ENROLLMENT))
    await h.when(workflow_applied(account="someone-else"))
    assert h.parked().status == "parked"


async def test_a_parked_step_its_version_does_not_match_fails_as_rejected(
    h: MessagingHarness,
) -> None:
    await h.given(granted(ENROLLMENT, step_id="renamed"))
    outcome = await h.when(workflow_applied())
    [failed] = outcome.of_type(MessageFailed)
    assert failed.payload.kind is FailureKind.REJECTED
    assert "'renamed'" in failed.payload.reason
    assert failed.payload.attempts == 1
    assert h.parked().status == "failed"
    assert h.store.sends == {}


async def test_a_parked_step_its_version_does_not_have_fails_as_rejected(
    h: MessagingHarness,
) -> None:
    await h.given(granted(ENROLLMENT, step_index=7))
    [failed] = (await h.when(workflow_applied())).of_type(MessageFailed)
    assert "has no step 7" in failed.payload.reason


async def test_a_step_parked_longer_than_the_limit_fails_with_the_reason(
    h: MessagingHarness,
) -> None:
    due = granted(ENROLLMENT)
    await h.given(enrollment_enrolled(ENROLLMENT), due)
    assert await h.expire_parked(now=NOW + timedelta(minutes=59)) == (0, [])

    count, [failed] = await h.expire_parked(now=NOW + timedelta(hours=1, seconds=1))

    assert count == 1
    assert isinstance(failed, MessageFailed)
    assert failed.message_id == derived_message_id("message.failed", ACCOUNT, ENROLLMENT, 0)
    assert failed.payload.kind is FailureKind.REJECTED
    assert failed.payload.reason.startswith("workflow version never arrived")
    assert (failed.payload.step_id, failed.payload.recipient) == ("intro", None)
    assert failed.causation_id == due.message_id
    assert h.sender.stats.parked_expired == 1
    # The version arriving after that changes nothing: the step has failed for good.
    await h.when(workflow_applied())
    assert h.parked().status == "failed"
    assert await h.send_due(now=NOW + timedelta(hours=2)) == []
    assert h.email.calls == 0
