"""messaging's enrollment projection on the fake store: it follows the enrollment events,
keeps the recipient, never revives an ended enrollment; an end cancels the enrollment's
unsent steps at once, and a resume re-queues nothing (a new grant does).

Every consumer case runs on the harness, as one batch and message by message.
"""

from __future__ import annotations

import pytest

from services.messaging.projection import EnrollmentStatus
from shared.contracts.events import CancelReason
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, exited, paused
from tests.support.builders.messaging_events import (
    ENROLLMENT,
    OTHER_ENROLLMENT,
    enrollment_enrolled,
    granted,
    resumed,
    revoked,
)
from tests.support.fakes.messaging_harness import MessagingHarness, messaging_harness

pytestmark = pytest.mark.handler

OTHER = OTHER_ENROLLMENT


@pytest.fixture
def h() -> MessagingHarness:
    return messaging_harness()


async def test_the_projection_keeps_the_recipient_and_never_revives_an_exit(
    h: MessagingHarness,
) -> None:
    await h.when(enrollment_enrolled(ENROLLMENT))
    assert h.view().status is EnrollmentStatus.ACTIVE
    assert h.view().recipient_email == "ada@example.com"
    await h.when(exited(ENROLLMENT))
    await h.when(enrollment_enrolled(ENROLLMENT))  # replayed
    await h.when(resumed(ENROLLMENT))
    view = h.view()
    assert view.status is EnrollmentStatus.EXITED
    assert view.recipient_email == "ada@example.com"


async def test_an_exit_seen_before_the_enrollment_still_ends_it(h: MessagingHarness) -> None:
    await h.when(exited(ENROLLMENT))
    await h.when(enrollment_enrolled(ENROLLMENT))
    view = h.view()
    assert (view.status, view.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")


async def test_another_accounts_enrollment_with_the_same_id_is_another_row(
    h: MessagingHarness,
) -> None:
    await h.when(enrollment_enrolled(ENROLLMENT))
    await h.when(exited(ENROLLMENT, account=OTHER_ACCOUNT))
    # Ours is as it was; theirs is its own row, ended.
    assert h.view().account_id == ACCOUNT
    assert h.view().status is EnrollmentStatus.ACTIVE
    assert h.view(account=OTHER_ACCOUNT).status is EnrollmentStatus.EXITED


# --- several messages in one run: one statement per kind of change, as if one by one ---


async def test_enrolled_then_exited_in_one_run_leaves_the_enrollment_exited(
    h: MessagingHarness,
) -> None:
    await h.when(enrollment_enrolled(ENROLLMENT), enrollment_enrolled(OTHER), exited(ENROLLMENT))
    # One read of the ended enrollment's sends (none: nothing to cancel).
    assert h.store.calls == [
        "enrollments_for_update",
        "save_enrollments",
        "queued_of",
        "sms_books",  # the run's accounts' SMS balances: none metered, nothing more
    ]
    view = h.view()
    assert (view.status, view.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")
    assert h.view(OTHER).status is EnrollmentStatus.ACTIVE


async def test_exited_then_enrolled_in_one_run_stays_exited_with_the_recipient(
    h: MessagingHarness,
) -> None:
    await h.when(exited(ENROLLMENT), enrollment_enrolled(ENROLLMENT))
    view = h.view()
    assert (view.status, view.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")


async def test_a_pause_and_resume_in_one_run_requeue_nothing(h: MessagingHarness) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT), granted(ENROLLMENT), paused(ENROLLMENT))
    await h.send_due()
    assert h.row().cancel_reason is CancelReason.ENROLLMENT_PAUSED
    wakeups = h.store.wakeups
    h.store.calls.clear()
    await h.when(resumed(ENROLLMENT), paused(ENROLLMENT), resumed(ENROLLMENT))
    assert h.store.calls == ["enrollments_for_update", "save_enrollments", "sms_books"]
    assert h.row().status == "cancelled"
    assert h.store.wakeups == wakeups
    assert h.view().status is EnrollmentStatus.ACTIVE


async def test_revokes_and_exits_of_several_enrollments_in_one_run_cost_one_read_one_update(
    h: MessagingHarness,
) -> None:
    await h.ready(
        enrollment_enrolled(ENROLLMENT),
        enrollment_enrolled(OTHER),
        granted(ENROLLMENT),
        granted(OTHER),
    )
    h.store.calls.clear()
    outcome = await h.when(exited(ENROLLMENT), revoked(OTHER), exited(OTHER))
    assert h.store.calls == [
        "enrollments_for_update",
        "save_enrollments",
        "queued_of",
        "stop_unsent",
        "sms_books",
    ]
    reasons = {m.payload.enrollment_id: m.payload.reason for m in outcome.published}
    assert reasons == {
        ENROLLMENT: CancelReason.ENROLLMENT_EXITED,
        OTHER: CancelReason.DISPATCH_REVOKED,  # the revoke came first
    }
    assert h.view(OTHER).status is EnrollmentStatus.EXITED


async def test_another_accounts_events_in_the_run_project_their_own_enrollment(
    h: MessagingHarness,
) -> None:
    await h.when(
        enrollment_enrolled(ENROLLMENT),
        enrollment_enrolled(ENROLLMENT, email="bob@example.com", account=OTHER_ACCOUNT),
        exited(ENROLLMENT),
    )
    assert h.store.calls == [
        "enrollments_for_update",
        "save_enrollments",
        "queued_of",
        "sms_books",  # the run's accounts' SMS balances: none metered, nothing more
    ]
    ours, theirs = h.view(), h.view(account=OTHER_ACCOUNT)
    assert (ours.status, ours.recipient_email) == (EnrollmentStatus.EXITED, "ada@example.com")
    assert (theirs.status, theirs.recipient_email) == (
        EnrollmentStatus.ACTIVE,
        "bob@example.com",
    )
