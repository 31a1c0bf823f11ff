"""Re-enrollment policies (``services.enrollment.reenrollment``): ``never`` enrolls a
record once ever, ``when_not_active`` again once the earlier enrollment ended,
``anytime`` also while it is live (the live one is restarted), each with the optional
minimum days between two enrollments."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.enrollment.domain import (
    Admitted,
    Dispatch,
    Enrollment,
    PendingExit,
    Refused,
    Status,
    WorkflowVersion,
    decide_enrollment,
)
from shared.contracts import Actor, ActorKind
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.workflow import ReenrollmentPolicy
from tests.support.builders.enrollment_domain import ACCOUNT, CONTACT, NOW, enrollment, workflow

pytestmark = pytest.mark.unit

USER = Actor(kind=ActorKind.USER, id="u-1")
ENDED = (Status.COMPLETED, Status.EXITED)
LIVE = (Status.ACTIVE, Status.PAUSED)


def enroll(wf: WorkflowVersion, previous: list[Enrollment]) -> Admitted | Refused:
    return decide_enrollment(
        workflow=wf,
        workflow_id=wf.workflow_id,
        record=CONTACT,
        account_id=ACCOUNT,
        previous=previous,
        now=NOW,
        enrollment_id=uuid.uuid4(),
        contact=None,
        actor=USER,
    )


def codes(decision: Admitted | Refused) -> list[str]:
    return [r.code for r in decision.rejections] if isinstance(decision, Refused) else []


def policy(name: ReenrollmentPolicy, min_days: int = 0) -> WorkflowVersion:
    return workflow(reenrollment=name, min_days_between_enrollments=min_days)


@pytest.mark.parametrize("status", [*LIVE, *ENDED])
def test_a_never_workflow_enrolls_a_record_once_ever(status: Status) -> None:
    decision = enroll(policy(ReenrollmentPolicy.NEVER), [enrollment(status)])
    expected = "already_enrolled" if status.live else "reenrollment_not_allowed"
    assert codes(decision) == [expected]


@pytest.mark.parametrize("status", LIVE)
def test_a_when_not_active_workflow_refuses_a_live_record(status: Status) -> None:
    decision = enroll(policy(ReenrollmentPolicy.WHEN_NOT_ACTIVE), [enrollment(status)])
    assert codes(decision) == ["already_enrolled"]


@pytest.mark.parametrize("status", ENDED)
def test_a_when_not_active_workflow_enrolls_again_once_the_last_one_ended(status: Status) -> None:
    decision = enroll(policy(ReenrollmentPolicy.WHEN_NOT_ACTIVE), [enrollment(status)])
    assert isinstance(decision, Admitted)
    assert decision.restarts is None


@pytest.mark.parametrize("status", LIVE)
def test_an_anytime_workflow_restarts_a_live_record(status: Status) -> None:
    live = enrollment(status)
    decision = enroll(policy(ReenrollmentPolicy.ANYTIME), [enrollment(Status.EXITED), live])
    assert isinstance(decision, Admitted)
    assert decision.restarts == live
    assert decision.enrollment.current_step == 0
    assert decision.enrollment.enrollment_id != live.enrollment_id


def test_an_anytime_workflow_refuses_while_a_step_of_the_live_one_is_being_sent() -> None:
    dispatch = Dispatch(uuid.uuid4(), 0, "s0", NOW + timedelta(minutes=5))
    sending = replace(enrollment(Status.ACTIVE), dispatch=dispatch)
    decision = enroll(policy(ReenrollmentPolicy.ANYTIME), [sending])
    assert codes(decision) == ["already_enrolled"]
    assert isinstance(decision, Refused)
    assert "sending a step" in decision.rejections[0].detail


def test_an_anytime_workflow_refuses_while_the_live_one_is_exiting() -> None:
    pending = PendingExit(ExitReason.MANUAL, ExitSource.MANUAL, USER, None, decided_at=NOW)
    exiting = replace(enrollment(Status.ACTIVE), pending_exit=pending)
    assert codes(enroll(policy(ReenrollmentPolicy.ANYTIME), [exiting])) == ["already_enrolled"]


@pytest.mark.parametrize("status", [*LIVE, *ENDED])
def test_an_anytime_workflow_waits_the_minimum_days_even_to_restart(status: Status) -> None:
    recent = enrollment(status, enrolled_at=NOW - timedelta(days=2))
    decision = enroll(policy(ReenrollmentPolicy.ANYTIME, min_days=3), [recent])
    assert codes(decision) == ["reenrollment_too_soon"]


def test_the_minimum_days_count_from_the_start_of_the_latest_enrollment() -> None:
    wf = policy(ReenrollmentPolicy.WHEN_NOT_ACTIVE, min_days=3)
    long_ago = enrollment(Status.EXITED, enrolled_at=NOW - timedelta(days=3))
    assert isinstance(enroll(wf, [long_ago]), Admitted)
    recent = enrollment(Status.COMPLETED, enrolled_at=NOW - timedelta(days=2, hours=23))
    assert codes(enroll(wf, [long_ago, recent])) == ["reenrollment_too_soon"]


def test_a_first_enrollment_passes_every_policy_and_minimum() -> None:
    for name in ReenrollmentPolicy:
        decision = enroll(policy(name, min_days=30), [])
        assert isinstance(decision, Admitted)
        assert decision.restarts is None


histories = st.lists(
    st.tuples(st.sampled_from(list(Status)), st.integers(min_value=0, max_value=40)),
    max_size=4,
).filter(lambda h: sum(s.live for s, _ in h) <= 1)  # one live per record: a DB invariant


@given(
    name=st.sampled_from(list(ReenrollmentPolicy)),
    min_days=st.integers(min_value=0, max_value=10),
    history=histories,
)
def test_every_policy_admits_exactly_when_its_rules_allow(
    name: ReenrollmentPolicy, min_days: int, history: list[tuple[Status, int]]
) -> None:
    previous = [enrollment(s, enrolled_at=NOW - timedelta(days=d)) for s, d in history]
    decision = enroll(policy(name, min_days), previous)

    live = [e for e in previous if e.status.live]
    too_soon = any(NOW - e.enrolled_at < timedelta(days=min_days) for e in previous)
    allowed = not previous or (
        name is not ReenrollmentPolicy.NEVER
        and (not live or name is ReenrollmentPolicy.ANYTIME)
        and not too_soon
    )
    assert isinstance(decision, Admitted) == allowed
    if isinstance(decision, Admitted):
        assert decision.restarts == (live[0] if live else None)
    else:
        assert len(decision.rejections) == 1
