"""``MessagingStore``, the fake and PostgreSQL alike: sends under enrollment's grants. A
renewal extends a send's lease, a lapsed lease whose renewal was asked for keeps the send
from being claimed until it comes, and unsent steps are stopped (revoked grant, ended
enrollment) only while no call was handed to a provider."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.messaging.domain import Defer, Deferred, Sent
from services.messaging.parking import ParkedStep
from services.messaging.stopping import Stopped
from shared.contracts import utc_now
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel
from tests.conftest import SessionEnv
from tests.support.builders.messaging_rows import ACCOUNT, CONTACT, OTHER_ACCOUNT, send, view
from tests.support.messaging_subject import (
    SendGrant,
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


def parked(enrollment_id: uuid.UUID, *, at: datetime, lease_until: datetime) -> ParkedStep:
    cause = uuid.uuid4()
    return ParkedStep(
        enrollment_id=enrollment_id,
        step_index=0,
        account_id=ACCOUNT,
        workflow_id="wf",
        workflow_version=1,
        record=CONTACT,
        step_id="s0",
        channel=Channel.EMAIL,
        provider_message_id=f"<{enrollment_id}.0@test>",
        parked_at=at,
        cause_message_id=cause,
        correlation_id=cause,
        dispatch_id=uuid.uuid5(enrollment_id, "dispatch-0"),
        lease_until=lease_until,
    )


async def test_a_renewal_extends_the_lease_of_unsent_sends_only_when_later(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    lease, later = now + timedelta(minutes=2), now + timedelta(minutes=5)
    pending, sending, done, waiting = (uuid.uuid4() for _ in range(4))
    await repo.add_pending_sends(
        [send(e, lease_until=lease) for e in (pending, sending, done)], now=now
    )
    await hand_over(repo, send(sending, lease_until=lease))
    await repo.mark_sent([Sent(await hand_over(repo, send(done, lease_until=lease)), "a@x", now)])
    await repo.park_steps([parked(waiting, at=now, lease_until=lease)])

    earlier = [send(e, lease_until=now) for e in (pending, sending, done)]
    assert await repo.add_pending_sends(earlier, now=now) == set()
    assert await repo.park_steps([parked(waiting, at=now, lease_until=now)]) == set()
    renewals = [send(e, lease_until=later) for e in (pending, sending, done)]
    assert await repo.add_pending_sends(renewals, now=now) == {
        (ACCOUNT, pending, 0),
        (ACCOUNT, sending, 0),
    }
    assert await repo.park_steps([parked(waiting, at=now, lease_until=later)]) == {
        (ACCOUNT, waiting, 0)
    }

    leases = {key[1]: grant.lease_until for key, grant in (await subject.grants()).items()}
    assert leases == {pending: later, sending: later, done: lease, waiting: later}
    assert await statuses(subject) == {
        pending: ("pending", None),
        sending: ("sending", None),
        done: ("sent", None),
        waiting: ("parked", None),
    }


async def test_a_deferred_send_is_not_claimed_until_its_grant_is_renewed(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    lease = now - timedelta(seconds=1)
    deferred, legacy = send(uuid.uuid4(), lease_until=lease), send(uuid.uuid4())
    await repo.save_enrollments([view(deferred.enrollment_id), view(legacy.enrollment_id)])
    await repo.add_pending_sends([deferred, legacy], now=now - timedelta(minutes=5))
    [lapsed, _] = sorted(
        await repo.claim_due(now=now, limit=10), key=lambda c: c.send.lease_until is None
    )
    assert lapsed.send.key == deferred.key
    assert (lapsed.send.dispatch_id, lapsed.send.lease_until) == (deferred.dispatch_id, lease)

    grant = Defer(lapsed.send.dispatch_id or uuid.uuid4(), lease)
    asked = await repo.defer([Deferred(lapsed.send, grant, now)], now=now)

    assert asked == {deferred.key}
    assert (await subject.grants())[deferred.key] == SendGrant(deferred.dispatch_id, lease, lease)
    # A send queued before grants has no lease: it is claimed as before.
    assert [c.send.key for c in await repo.claim_due(now=now, limit=10)] == [legacy.key]
    renewed = replace(deferred, lease_until=now + timedelta(minutes=2))
    assert await repo.add_pending_sends([renewed], now=now) == {deferred.key}
    claimed = await repo.claim_due(now=now, limit=10)
    assert {c.send.key for c in claimed} == {deferred.key, legacy.key}


async def test_a_deferral_keeps_a_crashs_send_to_resolve_and_asks_nothing_once_renewed(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    lease = now - timedelta(seconds=1)
    crashed, renewed = send(uuid.uuid4(), lease_until=lease), send(uuid.uuid4(), lease_until=lease)
    await repo.save_enrollments([view(crashed.enrollment_id), view(renewed.enrollment_id)])
    await repo.add_pending_sends([crashed, renewed], now=now)
    crashed_attempt = await hand_over(repo, crashed)
    renewed_attempt = await hand_over(repo, renewed)
    later = now + timedelta(minutes=2)
    await repo.add_pending_sends([replace(renewed, lease_until=later)], now=now)

    asked = await repo.defer(
        [
            Deferred(crashed_attempt, Defer(crashed.dispatch_id or uuid.uuid4(), lease), now, True),
            Deferred(renewed_attempt, Defer(renewed.dispatch_id or uuid.uuid4(), lease), now),
        ],
        now=now,
    )

    assert asked == {crashed.key}
    assert await statuses(subject) == {
        crashed.enrollment_id: ("sending", None),
        renewed.enrollment_id: ("pending", None),
    }
    leases = await subject.leases()
    assert (leases[crashed.key].attempt_id, leases[crashed.key].claimed_until) == (
        crashed_attempt.attempt_id,
        now,
    )
    [claimed] = await repo.claim_due(now=now, limit=10)  # the renewed one only
    assert (claimed.send.key, claimed.after_crash) == (renewed.key, False)


async def test_unsent_steps_are_stopped_and_a_send_under_way_is_not(subject: Subject) -> None:
    repo, now = subject.store, utc_now()
    enrollment, other = uuid.uuid4(), uuid.uuid4()
    lease = now + timedelta(minutes=2)
    await repo.add_pending_sends(
        [send(enrollment, 0, lease_until=lease), send(enrollment, 1, lease_until=lease)],
        now=now,
    )
    await hand_over(repo, send(enrollment, 1))
    await repo.park_steps([parked(other, at=now, lease_until=lease)])
    await repo.add_pending_sends([send(enrollment, account=OTHER_ACCOUNT)], now=now)

    queued = await repo.queued_of([(ACCOUNT, enrollment), (ACCOUNT, other)])

    assert {key: step.status for key, step in queued.items()} == {
        (ACCOUNT, enrollment, 0): "pending",
        (ACCOUNT, enrollment, 1): "sending",
        (ACCOUNT, other, 0): "parked",
    }
    first = queued[(ACCOUNT, enrollment, 0)]
    assert (first.step_id, first.dispatch_id) == (
        "s0",
        send(enrollment, lease_until=lease).dispatch_id,
    )
    stopped = await repo.stop_unsent(
        [Stopped(step, CancelReason.DISPATCH_REVOKED, step.dispatch_id) for step in queued.values()]
    )
    assert stopped == {(ACCOUNT, enrollment, 0), (ACCOUNT, other, 0)}
    after = await subject.sends()
    assert {
        key[1:]: (s.status, s.cancel_reason) for key, s in after.items() if key[0] == ACCOUNT
    } == {
        (enrollment, 0): ("cancelled", "dispatch_revoked"),
        (enrollment, 1): ("sending", None),
        (other, 0): ("cancelled", "dispatch_revoked"),
    }
    assert await repo.stop_unsent([]) == set()
    assert await repo.queued_of([]) == {}
