"""Exclusions at send time: a *remove* rule that matches when a step is due, or while a
granted send is out, exits the enrollment with the rule named, and nothing is sent.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.enrollment.screening import excluded_at_send
from shared.contracts import RecordRef
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    EnrollmentDispatchRevoked,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentStepGranted,
)
from shared.contracts.exclusions import (
    RuleAction,
)
from tests.support.builders.enrollment_commands import ALICE, apply_cmd, definition
from tests.support.builders.enrollment_dispatch import cancelled_for, due_evt
from tests.support.builders.enrollment_dispatch_setup import granted_in
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.enrollment_setup import EnrollmentHarness, enrollment_harness, only
from tests.support.builders.exclusion_commands import (
    enroll_from,
    put_rule,
    upserted,
)
from tests.support.builders.exclusions import cond

pytestmark = pytest.mark.handler

CUSTOMER = cond("lifecyclestage", "is", "customer")


@pytest.fixture
async def h() -> EnrollmentHarness:
    harness = enrollment_harness()
    await harness.given(apply_cmd(definition()))
    return harness


async def enrolled(h: EnrollmentHarness, record: RecordRef = ALICE) -> EnrollmentEnrolled:
    return only(await h.when(enroll_from(record)), EnrollmentEnrolled)


async def test_a_send_time_check_finds_enrollments_a_rule_now_matches_with_time_alone(
    h: EnrollmentHarness,
) -> None:
    enrollment = await enrolled(h)
    await h.given(
        put_rule("r-stale", cond("last_seen", "older_than_days", 30), action=RuleAction.REMOVE),
        upserted(ALICE, fields={"last_seen": "2026-02-20"}),  # 10 days before T0
    )
    key = (ACCOUNT, enrollment.payload.enrollment_id)
    live = [h.store.enrollments[key]]

    assert await excluded_at_send(h.store, live, h.now) == []
    ((found, hit),) = await excluded_at_send(h.store, live, h.now + timedelta(days=21))
    assert (found.enrollment_id, hit.rule_id) == (key[1], "r-stale")


async def test_a_remove_rule_waits_for_a_granted_send_and_still_names_the_rule(
    h: EnrollmentHarness,
) -> None:
    await h.given(put_rule("r-1", CUSTOMER, action=RuleAction.REMOVE))
    _, grant = await granted_in(h)

    waiting = await h.when(upserted(ALICE, fields={"lifecyclestage": "customer"}))
    settled = await h.when(cancelled_for(grant))

    assert only(waiting, EnrollmentDispatchRevoked)
    assert waiting.of_type(EnrollmentExited) == []
    exited = only(settled, EnrollmentExited)
    assert exited.payload.reason is ExitReason.EXCLUSION_MATCHED
    assert exited.payload.exclusion is not None
    assert (exited.payload.exclusion.rule_id, exited.payload.exclusion.version) == ("r-1", 1)


async def test_a_due_step_of_a_record_a_rule_now_matches_with_time_alone_exits_unsent(
    h: EnrollmentHarness,
) -> None:
    enrollment = await enrolled(h)
    await h.given(
        put_rule("r-stale", cond("last_seen", "older_than_days", 30), action=RuleAction.REMOVE),
        upserted(ALICE, fields={"last_seen": "2026-02-20"}),  # 10 days before T0: no match yet
    )
    h.now += timedelta(days=21)  # now 31 days: no event happened, time alone made it match

    outcome = await h.when(due_evt(enrollment))

    assert outcome.of_type(EnrollmentStepGranted) == []
    exited = only(outcome, EnrollmentExited)
    assert exited.payload.reason is ExitReason.EXCLUSION_MATCHED
    assert exited.payload.source is ExitSource.EXCLUSION
    assert exited.payload.exclusion is not None
    assert exited.payload.exclusion.rule_id == "r-stale"
    assert exited.payload.triggering_event is not None
    assert exited.payload.triggering_event.type == "step.due"


async def test_a_due_step_of_a_record_no_rule_matches_is_granted(h: EnrollmentHarness) -> None:
    enrollment = await enrolled(h)
    await h.given(
        put_rule("r-stale", cond("last_seen", "older_than_days", 30), action=RuleAction.REMOVE),
        upserted(ALICE, fields={"last_seen": "2026-02-20"}),
    )

    outcome = await h.when(due_evt(enrollment))

    assert only(outcome, EnrollmentStepGranted).payload.step_index == 0
    assert outcome.of_type(EnrollmentExited) == []
