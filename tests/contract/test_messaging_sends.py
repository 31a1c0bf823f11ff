"""``MessagingStore``, the fake and PostgreSQL alike: the ``sending`` state (an attempt
and its lease), outcomes recorded only by the attempt that holds the send, sends left by
a crash, the retry budget's clock, and steps parked until their workflow version."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.messaging.domain import Cancelled, Failed, Released, Sent
from services.messaging.parking import ParkedFailed, ParkedStep
from shared.contracts import utc_now
from shared.contracts.events import CancelReason, FailureKind
from shared.contracts.inbound import Channel
from tests.conftest import SessionEnv
from tests.support.builders.messaging_rows import ACCOUNT, CONTACT, send, view, wf_step
from tests.support.messaging_subject import Subject, hand_over, messaging_subject, statuses

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "postgres"])
async def subject(request: pytest.FixtureRequest, test_env: SessionEnv) -> AsyncIterator[Subject]:
    async with messaging_subject(request.param, test_env) as opened:
        yield opened


def parked(enrollment_id: uuid.UUID, *, at: datetime, version: int = 1) -> ParkedStep:
    cause = uuid.uuid4()
    return ParkedStep(
        enrollment_id=enrollment_id,
        step_index=0,
        account_id=ACCOUNT,
        workflow_id="wf",
        workflow_version=version,
        record=CONTACT,
        step_id="s0",
        channel=Channel.EMAIL,
        provider_message_id=f"<{enrollment_id}.0@test>",
        parked_at=at,
        cause_message_id=cause,
        correlation_id=cause,
    )


# --- claims, leases and attempts ---


async def test_a_send_handed_to_an_attempt_is_not_claimed_again_until_its_lease_runs_out(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    one = send(uuid.uuid4())
    await repo.save_enrollments([view(one.enrollment_id)])
    await repo.add_pending_sends([one], now=now - timedelta(seconds=1))
    [claimed] = await repo.claim_due(now=now, limit=10)
    assert not claimed.after_crash
    attempt = replace(claimed.send, attempt_id=uuid.uuid4())
    await repo.mark_sending([attempt], until=now + timedelta(seconds=50))

    assert await repo.claim_due(now=now + timedelta(seconds=49), limit=10) == []
    [again] = await repo.claim_due(now=now + timedelta(seconds=50), limit=10)
    assert again.after_crash  # a crash left it: the provider may have accepted it
    assert again.send.attempt_id == attempt.attempt_id
    assert (await statuses(subject))[one.enrollment_id] == ("sending", None)
    leases = await subject.leases()
    assert leases[one.key].claimed_until == now + timedelta(seconds=50)


async def test_an_outcome_applies_only_for_the_attempt_that_holds_the_send(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    one, two = send(uuid.uuid4()), send(uuid.uuid4())
    await repo.add_pending_sends([one, two], now=now)
    first = await hand_over(repo, one)
    second = await hand_over(repo, first)  # the lease ran out and another sender took it

    assert await repo.mark_sent([Sent(first, "a@x", now)]) == set()
    assert await repo.record_failures([Failed(first, "late", None, now)]) == set()
    assert await repo.mark_cancelled([Cancelled(first, CancelReason.ENROLLMENT_EXITED)]) == set()
    await repo.release([Released(first, after_crash=False)], now=now)
    assert (await statuses(subject))[one.enrollment_id] == ("sending", None)

    assert await repo.mark_sent([Sent(second, "a@x", now)]) == {one.key}
    assert await repo.mark_sent([Sent(second, "a@x", now)]) == set()  # finished
    assert (await subject.sends())[one.key].attempts == 1
    # A pending send is cancelled by the claim that read it without an attempt.
    assert await repo.mark_cancelled([Cancelled(two, CancelReason.ENROLLMENT_PAUSED)]) == {two.key}


async def test_a_released_claim_is_pending_again_and_a_crashs_send_stays_to_be_resolved(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    fresh, crashed = send(uuid.uuid4()), send(uuid.uuid4())
    await repo.save_enrollments([view(fresh.enrollment_id), view(crashed.enrollment_id)])
    await repo.add_pending_sends([fresh, crashed], now=now - timedelta(seconds=1))
    fresh_attempt = await hand_over(repo, fresh)
    crashed_attempt = await hand_over(repo, crashed)

    await repo.release(
        [Released(fresh_attempt, after_crash=False), Released(crashed_attempt, after_crash=True)],
        now=now,
    )

    assert await statuses(subject) == {
        fresh.enrollment_id: ("pending", None),
        crashed.enrollment_id: ("sending", None),
    }
    claimed = {c.send.key: c.after_crash for c in await repo.claim_due(now=now, limit=10)}
    assert claimed == {fresh.key: False, crashed.key: True}
    assert (await subject.sends())[fresh.key].attempts == 0  # no call was made


async def test_the_budget_counts_from_the_first_failure_and_a_failure_keeps_its_kind(
    subject: Subject,
) -> None:
    repo = subject.store
    t0 = utc_now()
    one = send(uuid.uuid4())
    await repo.add_pending_sends([one], now=t0)
    later = t0 + timedelta(seconds=2)
    await repo.record_failures([Failed(await hand_over(repo, one), "451", later, t0)])
    await repo.record_failures([Failed(await hand_over(repo, one), "451", None, later, None)])
    assert (await subject.leases())[one.key].first_failed_at == t0
    last = Failed(await hand_over(repo, one), "timeout", None, later, FailureKind.RETRIES_EXHAUSTED)
    assert await repo.record_failures([last]) == set()  # failed already: finished

    two = send(uuid.uuid4())
    await repo.add_pending_sends([two], now=t0)
    bounced = Failed(await hand_over(repo, two), "550 5.1.1", None, t0, FailureKind.HARD_BOUNCE)
    assert await repo.record_failures([bounced]) == {two.key}
    leases = await subject.leases()
    assert leases[two.key].failure_kind == "hard_bounce"
    assert (leases[two.key].attempt_id, leases[two.key].claimed_until) == (None, None)
    assert (await statuses(subject))[two.enrollment_id] == ("failed", None)


async def test_a_requeued_paused_send_starts_a_new_budget(subject: Subject) -> None:
    repo, t0 = subject.store, utc_now()
    one = send(uuid.uuid4())
    await repo.add_pending_sends([one], now=t0)
    await repo.record_failures([Failed(await hand_over(repo, one), "451", t0, t0)])
    await repo.mark_cancelled([Cancelled(one, CancelReason.ENROLLMENT_PAUSED)])
    assert await repo.add_pending_sends([one], now=t0) == {one.key}
    assert (await subject.leases())[one.key].first_failed_at is None


# --- parked steps ---


async def test_a_parked_step_waits_without_content_and_its_version_queues_it(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    waiting, other_version, taken = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await repo.add_pending_sends([send(taken)], now=now)
    await repo.mark_sent([Sent(await hand_over(repo, send(taken)), "a@x", now)])
    assert await repo.park_steps(
        [parked(waiting, at=now), parked(other_version, at=now, version=2), parked(taken, at=now)]
    ) == {(ACCOUNT, waiting, 0), (ACCOUNT, other_version, 0)}
    assert await repo.park_steps([parked(waiting, at=now)]) == set()  # parked already
    await repo.save_enrollments([view(waiting), view(other_version)])
    assert await repo.claim_due(now=now + timedelta(hours=1), limit=10) == []
    assert await repo.cancel_orphans(created_before=now + timedelta(hours=1), limit=10) == []

    found = await repo.parked_of({(ACCOUNT, "wf", 1), ("x", "wf", 1)})
    assert [p.enrollment_id for p in found] == [waiting]
    assert (found[0].step_id, found[0].provider_message_id) == ("s0", f"<{waiting}.0@test>")
    later = now + timedelta(seconds=5)
    assert await repo.add_pending_sends([send(waiting)], now=later) == {(ACCOUNT, waiting, 0)}

    assert (await statuses(subject))[waiting] == ("pending", None)
    [claimed] = await repo.claim_due(now=later, limit=10)
    assert (claimed.send.key, claimed.send.subject) == ((ACCOUNT, waiting, 0), "Hi")
    assert await repo.parked_of({(ACCOUNT, "wf", 1)}) == []


async def test_a_step_parked_too_long_fails_and_is_never_queued_again(subject: Subject) -> None:
    repo, now = subject.store, utc_now()
    old, young = uuid.uuid4(), uuid.uuid4()
    await repo.park_steps(
        [parked(old, at=now - timedelta(hours=2)), parked(young, at=now - timedelta(minutes=5))]
    )

    expired = await repo.parked_before(now - timedelta(hours=1), limit=10)
    assert [p.enrollment_id for p in expired] == [old]
    assert expired[0].parked_at == now - timedelta(hours=2)
    await repo.fail_parked([ParkedFailed(expired[0], "workflow version never arrived", now)])

    assert await statuses(subject) == {old: ("failed", None), young: ("parked", None)}
    assert (await subject.leases())[(ACCOUNT, old, 0)].failure_kind == "rejected"
    assert (await subject.sends())[(ACCOUNT, old, 0)].last_error == "workflow version never arrived"
    assert await repo.add_pending_sends([send(old)], now=now) == set()
    assert await repo.parked_before(now - timedelta(hours=1), limit=10) == []


async def test_known_versions_are_those_with_saved_steps(subject: Subject) -> None:
    repo = subject.store
    await repo.save_workflow_steps([wf_step(0, "a"), wf_step(0, "b", version=2)])
    found = await repo.known_versions({(ACCOUNT, "wf", 1), (ACCOUNT, "wf", 3), ("x", "wf", 2)})
    assert found == {(ACCOUNT, "wf", 1)}
    assert await repo.known_versions(set()) == set()
