"""messaging's queueing on the fake store: workflow versions are kept, and a granted step is
queued once per enrollment for the sender, a whole run at a time.

Every consumer case runs on the harness, as one batch and message by message.
"""

from __future__ import annotations

import copy

import pytest

from services.messaging.errors import StepMismatchError, UnknownWorkflowStepError
from shared.consumer import RejectedMessageError
from shared.contracts.events import EnrollmentStepGranted
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_events import ACCOUNT, T0
from tests.support.builders.messaging_events import (
    DEFAULT_SENDER,
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
OTHER = OTHER_ENROLLMENT


@pytest.fixture
def h() -> MessagingHarness:
    return messaging_harness()


async def test_a_granted_step_is_queued_with_its_message_id_and_grant_and_wakes_the_senders(
    h: MessagingHarness,
) -> None:
    await h.ready()
    due = granted(ENROLLMENT)
    outcome = await h.when(due)
    row = h.row()
    assert row.status == "pending"
    assert row.send.provider_message_id == f"<{ENROLLMENT}.0@{DOMAIN}>"
    assert (row.send.sender, row.send.subject, row.send.body) == (
        DEFAULT_SENDER,
        "Hello there",
        "Hi!",
    )
    assert row.send.cause_message_id == due.message_id
    assert (row.send.dispatch_id, row.send.lease_until) == (
        due.payload.dispatch_id,
        due.payload.lease_until,
    )
    assert h.store.wakeups == 1
    assert outcome.published == []  # nothing is published before the send itself


async def test_a_step_is_queued_at_most_once_per_enrollment(h: MessagingHarness) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT))
    await h.when(granted(ENROLLMENT))
    await h.send_due()
    await h.when(granted(ENROLLMENT))  # fired again (another message id): already sent
    assert h.row().status == "sent"
    assert len(h.store.sends) == 1
    assert h.store.wakeups == 1
    assert await h.send_due() == []
    assert len(h.email.accepted) == 1


async def test_a_step_its_known_version_does_not_have_is_rejected(h: MessagingHarness) -> None:
    """(A step whose version is not known yet is parked: test_messaging_parking.)"""
    await h.ready()
    due = granted(ENROLLMENT, step_index=7)
    with pytest.raises(UnknownWorkflowStepError) as raised:
        await h.handlers[EnrollmentStepGranted.TYPE](
            UnitOfWork(None, copy.deepcopy(h.store)), [due], NOW
        )
    assert isinstance(raised.value, RejectedMessageError)
    assert WORKFLOW in str(raised.value)

    outcome = await h.when(due)  # the pipeline dead-letters it with the reason

    assert [(m.message_id, r) for m, r in outcome.rejected] == [
        (due.message_id, raised.value.reason)
    ]
    assert h.store.sends == {}
    assert h.store.parked == {}


async def test_a_step_that_disagrees_with_its_workflow_version_is_rejected(
    h: MessagingHarness,
) -> None:
    await h.ready()
    due = granted(ENROLLMENT, step_id="nudge")
    with pytest.raises(StepMismatchError) as raised:
        await h.handlers[EnrollmentStepGranted.TYPE](
            UnitOfWork(None, copy.deepcopy(h.store)), [due], NOW
        )
    assert raised.value.kind == "step_mismatch"

    outcome = await h.when(due)  # the pipeline dead-letters it with the reason

    assert [(m.message_id, reason) for m, reason in outcome.rejected] == [
        (due.message_id, raised.value.reason)
    ]
    assert h.store.sends == {}


# --- several messages in one run: one statement per kind of change, as if one by one ---


async def test_granted_steps_of_a_run_are_queued_with_one_lookup_one_insert_and_one_notify(
    h: MessagingHarness,
) -> None:
    await h.ready()
    h.store.calls.clear()
    first, second = granted(ENROLLMENT), granted(OTHER)
    await h.when(first, second)
    assert h.store.calls == ["workflow_steps", "add_pending_sends"]
    assert h.store.wakeups == 1
    assert h.row().send.cause_message_id == first.message_id
    assert h.row(enrollment_id=OTHER).send.cause_message_id == second.message_id
    assert h.row(enrollment_id=OTHER).send.provider_message_id == f"<{OTHER}.0@{DOMAIN}>"


async def test_a_step_granted_twice_in_a_run_is_queued_once_by_the_first(
    h: MessagingHarness,
) -> None:
    await h.ready()
    first, again = granted(ENROLLMENT), granted(ENROLLMENT)
    await h.when(first, again)
    assert len(h.store.sends) == 1
    assert h.row().send.cause_message_id == first.message_id
    assert h.store.wakeups == 1


async def test_a_run_of_steps_already_sent_wakes_nobody(h: MessagingHarness) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT))
    await h.send_due()
    wakeups = h.store.wakeups
    await h.when(granted(ENROLLMENT), granted(ENROLLMENT))
    assert h.row().status == "sent"
    assert h.store.wakeups == wakeups


async def test_one_step_its_version_does_not_have_is_rejected_alone_and_the_run_queued(
    h: MessagingHarness,
) -> None:
    await h.ready()
    outcome = await h.when(granted(ENROLLMENT), granted(OTHER, step_index=7))
    assert [m.payload.enrollment_id for m, _ in outcome.rejected] == [OTHER]
    assert list(h.store.sends) == [(ACCOUNT, ENROLLMENT, 0)]


async def test_workflow_versions_of_a_run_are_saved_in_one_call(h: MessagingHarness) -> None:
    applied = workflow_applied()
    await h.when(applied, workflow_applied())  # the second replays the same version
    # One save, and one look for steps parked for the versions (none here).
    assert h.store.calls == ["save_workflow_steps", "parked_of"]
    assert sorted(k[3] for k in h.store.steps) == [0, 1]
    assert h.store.steps[(ACCOUNT, WORKFLOW, 1, 0)].subject == "Hello\nthere"
