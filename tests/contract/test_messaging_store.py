"""``MessagingStore``: the fake and PostgreSQL behave alike.

What the port does not return (a send's status, attempts, last error, due time) is read
by a probe of each implementation (``tests/support/messaging_subject``). Claims, leases,
outcomes guarded by their attempt, and parked steps: test_messaging_sends.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from services.messaging.domain import Cancelled, Failed, Sent
from services.messaging.projection import EnrollmentStatus
from shared.contracts import utc_now
from shared.contracts.events import CancelReason, FailureKind
from tests.conftest import SessionEnv
from tests.support.builders.messaging_rows import (
    ACCOUNT,
    OTHER_ACCOUNT,
    send,
    view,
    wf_step,
)
from tests.support.messaging_subject import (
    SendGrant,
    SendState,
    Subject,
    hand_over,
    messaging_subject,
    statuses,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "postgres"])
async def subject(request: pytest.FixtureRequest, test_env: SessionEnv) -> AsyncIterator[Subject]:
    async with messaging_subject(request.param, test_env) as opened:
        yield opened


# --- workflow steps and the enrollment projection ---


async def test_steps_of_several_versions_are_saved_and_found_at_once(subject: Subject) -> None:
    repo = subject.store
    await repo.save_workflow_steps([wf_step(0, "a"), wf_step(1, "b"), wf_step(0, "c", version=2)])
    await repo.save_workflow_steps([wf_step(0, "replayed")])  # a version never changes

    found = await repo.workflow_steps(
        {(ACCOUNT, "wf", 1, 0), (ACCOUNT, "wf", 2, 0), (ACCOUNT, "wf", 3, 0), ("x", "wf", 1, 1)}
    )

    assert found == {
        (ACCOUNT, "wf", 1, 0): wf_step(0, "a"),
        (ACCOUNT, "wf", 2, 0): wf_step(0, "c", version=2),
    }
    assert await repo.workflow_steps(set()) == {}


async def test_the_projection_is_locked_and_saved_for_many_enrollments_at_once(
    subject: Subject,
) -> None:
    repo = subject.store
    known, new, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await repo.save_enrollments([view(known)])

    found = await repo.enrollments_for_update([(ACCOUNT, known), (ACCOUNT, unknown)])
    assert found == {(ACCOUNT, known): view(known)}
    await repo.save_enrollments(
        [
            # Only status and recipient change on an existing row.
            view(known, EnrollmentStatus.EXITED, email=None, workflow_id="changed"),
            view(new, EnrollmentStatus.PAUSED),
        ]
    )

    after = await repo.enrollments_for_update([(ACCOUNT, known), (ACCOUNT, new)])
    assert after == {
        (ACCOUNT, known): view(known, EnrollmentStatus.EXITED, email=None),
        (ACCOUNT, new): view(new, EnrollmentStatus.PAUSED),
    }


# --- queueing ---


async def test_one_insert_queues_new_and_paused_sends_and_leaves_the_others(
    subject: Subject,
) -> None:
    repo = subject.store
    new, paused, exited, sent = (uuid.uuid4() for _ in range(4))
    earlier = utc_now() - timedelta(minutes=5)
    await repo.add_pending_sends([send(paused), send(exited), send(sent)], now=earlier)
    await repo.mark_cancelled(
        [
            Cancelled(send(paused), CancelReason.ENROLLMENT_PAUSED),
            Cancelled(send(exited), CancelReason.ENROLLMENT_EXITED),
        ]
    )
    await repo.mark_sent([Sent(await hand_over(repo, send(sent)), "ada@example.com", earlier)])

    now = utc_now()
    queued = await repo.add_pending_sends(
        [send(new), send(paused), send(exited), send(sent)], now=now
    )

    assert queued == {(ACCOUNT, new, 0), (ACCOUNT, paused, 0)}
    assert await statuses(subject) == {
        new: ("pending", None),
        paused: ("pending", None),
        exited: ("cancelled", "enrollment_exited"),
        sent: ("sent", None),
    }
    due = (await subject.sends()).items()
    assert {key[1] for key, s in due if s.next_attempt_at == now} == {new, paused}


async def test_a_new_grant_requeues_a_send_cancelled_for_a_pause_under_that_grant(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    paused, exited = uuid.uuid4(), uuid.uuid4()
    first = [send(paused, lease_until=now), send(exited, lease_until=now)]
    await repo.add_pending_sends(first, now=now)
    await repo.mark_cancelled(
        [
            Cancelled(first[0], CancelReason.ENROLLMENT_PAUSED),
            Cancelled(first[1], CancelReason.ENROLLMENT_EXITED),
        ]
    )
    again, lease = uuid.uuid4(), now + timedelta(minutes=2)
    regranted = [
        send(paused, lease_until=lease, dispatch_id=again),
        send(exited, lease_until=lease, dispatch_id=again),
    ]

    assert await repo.add_pending_sends(regranted, now=now) == {(ACCOUNT, paused, 0)}

    assert await statuses(subject) == {
        paused: ("pending", None),
        exited: ("cancelled", "enrollment_exited"),
    }
    grants = await subject.grants()
    assert grants[(ACCOUNT, paused, 0)] == SendGrant(again, lease, None)


async def test_empty_runs_change_nothing(subject: Subject) -> None:
    repo = subject.store
    await repo.save_workflow_steps([])
    await repo.save_enrollments([])
    await repo.mark_sent([])
    await repo.mark_cancelled([])
    await repo.record_failures([])
    assert await repo.enrollments_for_update([]) == {}
    assert await repo.add_pending_sends([], now=utc_now()) == set()
    assert await subject.sends() == {}


# --- the send queue ---


async def test_a_claim_takes_due_sends_of_projected_enrollments_earliest_first(
    subject: Subject,
) -> None:
    repo = subject.store
    now = utc_now()
    first, second, later, unprojected, third = (uuid.uuid4() for _ in range(5))
    await repo.save_enrollments(
        [
            view(first),
            view(second, EnrollmentStatus.PAUSED, email=None),
            view(later),
            view(third),
        ]
    )
    await repo.add_pending_sends([send(third)], now=now - timedelta(seconds=1))
    await repo.add_pending_sends([send(second)], now=now - timedelta(seconds=2))
    await repo.add_pending_sends([send(first), send(unprojected)], now=now - timedelta(seconds=3))
    await repo.add_pending_sends([send(later)], now=now + timedelta(minutes=1))

    claimed = await repo.claim_due(now=now, limit=2)
    everything = await repo.claim_due(now=now, limit=10)

    assert [(c.send.enrollment_id, c.enrollment_status, c.recipient_email) for c in claimed] == [
        (first, EnrollmentStatus.ACTIVE, "ada@example.com"),
        (second, EnrollmentStatus.PAUSED, None),
    ]
    assert claimed[0].send.provider_message_id == send(first).provider_message_id
    assert [c.send.enrollment_id for c in everything] == [first, second, third]


async def test_a_claim_carries_the_contacts_phone_number(subject: Subject) -> None:
    repo = subject.store
    now = utc_now()
    gains, loses = uuid.uuid4(), uuid.uuid4()
    await repo.save_enrollments([view(gains), view(loses, phone="+14155550123")])
    await repo.save_enrollments([view(gains, phone="+442079460958"), view(loses)])
    await repo.add_pending_sends([send(gains), send(loses)], now=now)
    claimed = await repo.claim_due(now=now, limit=10)
    phones = {c.send.enrollment_id: c.recipient_phone for c in claimed}
    assert phones == {gains: "+442079460958", loses: None}


async def test_outcomes_count_attempts_and_a_failure_is_retried_until_given_up(
    subject: Subject,
) -> None:
    repo = subject.store
    now = utc_now()
    retried, given_up, sent = send(uuid.uuid4()), send(uuid.uuid4()), send(uuid.uuid4())
    await repo.save_enrollments([view(s.enrollment_id) for s in (retried, given_up, sent)])
    await repo.add_pending_sends([retried, given_up, sent], now=now)
    later = now + timedelta(seconds=2)

    retried, given_up, sent = [await hand_over(repo, s) for s in (retried, given_up, sent)]
    recorded = await repo.record_failures(
        [
            Failed(retried, "timeout", later, now),
            Failed(given_up, "550", None, now, FailureKind.HARD_BOUNCE),
            Failed(sent, "x", now, now),
        ]
    )
    assert recorded == {retried.key, given_up.key, sent.key}
    assert await repo.mark_sent([Sent(sent, "ada@example.com", now)]) == set()  # old attempt
    assert await repo.mark_sent([Sent(await hand_over(repo, sent), "ada@example.com", now)]) == {
        sent.key
    }

    assert await subject.sends() == {
        retried.key: SendState("pending", None, 1, "timeout", later),
        given_up.key: SendState("failed", None, 1, "550", now),
        sent.key: SendState("sent", None, 2, None, now),
    }
    assert [c.send.key for c in await repo.claim_due(now=now, limit=10)] == []
    [again] = await repo.claim_due(now=later, limit=10)
    assert (again.send.key, again.send.attempts) == (retried.key, 1)


async def test_an_orphan_is_a_send_whose_own_accounts_enrollment_is_missing(
    subject: Subject,
) -> None:
    repo, other, shared_id = subject.store, OTHER_ACCOUNT, uuid.uuid4()
    await repo.save_enrollments([view(shared_id, account=other)])  # only theirs is projected
    await repo.add_pending_sends([send(shared_id)], now=utc_now())

    orphans = await repo.cancel_orphans(created_before=utc_now() + timedelta(seconds=1), limit=10)

    assert [(o.account_id, o.enrollment_id) for o in orphans] == [(ACCOUNT, shared_id)]


async def test_an_orphan_is_given_its_grace_period(subject: Subject) -> None:
    repo, orphan = subject.store, uuid.uuid4()
    await repo.add_pending_sends([send(orphan)], now=utc_now())

    too_soon = await repo.cancel_orphans(created_before=utc_now() - timedelta(minutes=5), limit=10)

    assert too_soon == []
    assert await statuses(subject) == {orphan: ("pending", None)}
    [cancelled] = await repo.cancel_orphans(
        created_before=utc_now() + timedelta(seconds=1), limit=1
    )
    assert cancelled.enrollment_id == orphan
    assert await statuses(subject) == {orphan: ("cancelled", "no_recipient")}


# --- accounts ---


async def test_two_accounts_with_the_same_ids_stay_apart(subject: Subject) -> None:
    """Same enrollment id, workflow id, step and provider Message-ID in two accounts."""
    repo, other, shared_id = subject.store, OTHER_ACCOUNT, uuid.uuid4()
    await repo.save_workflow_steps([wf_step(0, "ours"), wf_step(0, "theirs", account=other)])
    await repo.save_enrollments([view(shared_id), view(shared_id, account=other, email="b@x")])
    earlier = utc_now() - timedelta(seconds=1)
    queued = await repo.add_pending_sends(
        [send(shared_id), send(shared_id, account=other)], now=earlier
    )
    assert queued == {(ACCOUNT, shared_id, 0), (other, shared_id, 0)}

    steps = await repo.workflow_steps({(ACCOUNT, "wf", 1, 0), (other, "wf", 1, 0)})
    assert steps[(other, "wf", 1, 0)].step_id == "theirs"
    assert steps[(ACCOUNT, "wf", 1, 0)].step_id == "ours"
    # Theirs exits and its send is cancelled for a pause, then re-armed: ours never moves.
    locked = await repo.enrollments_for_update([(other, shared_id)])
    assert list(locked) == [(other, shared_id)]
    await repo.save_enrollments([view(shared_id, EnrollmentStatus.EXITED, account=other)])
    await repo.mark_cancelled(
        [Cancelled(send(shared_id, account=other), CancelReason.ENROLLMENT_PAUSED)]
    )
    claimed = await repo.claim_due(now=utc_now(), limit=10)
    assert [(c.send.account_id, c.enrollment_status, c.recipient_email) for c in claimed] == [
        (ACCOUNT, EnrollmentStatus.ACTIVE, "ada@example.com")
    ]
    regrant = send(shared_id, account=other, lease_until=utc_now() + timedelta(minutes=1))
    assert await repo.add_pending_sends([regrant], now=earlier) == {(other, shared_id, 0)}
    ours, theirs = send(shared_id), send(shared_id, account=other)
    ours, theirs = await hand_over(repo, ours), await hand_over(repo, theirs)
    await repo.mark_sent([Sent(ours, "ada@example.com", utc_now())])
    await repo.record_failures([Failed(theirs, "boom", None, utc_now(), FailureKind.REJECTED)])
    rows = await subject.sends()
    assert {k[0]: (s.status, s.attempts, s.last_error) for k, s in rows.items()} == {
        ACCOUNT: ("sent", 1, None),
        other: ("failed", 1, "boom"),
    }
    views = await repo.enrollments_for_update([(ACCOUNT, shared_id), (other, shared_id)])
    assert views[(ACCOUNT, shared_id)].status is EnrollmentStatus.ACTIVE
    assert views[(other, shared_id)].status is EnrollmentStatus.EXITED
