"""``MessagingStore``'s send limits, the fake and PostgreSQL alike: the usage ledger over a
rolling 24 hours, a full sender's sends skipped by the claim until capacity frees, the
oldest due send outside a claim, capacity given back, and the queue per sender."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from services.messaging.domain import Deferred, lapsed_grant
from shared.contracts import utc_now
from tests.conftest import SessionEnv
from tests.support.builders.messaging_rows import ACCOUNT, send, view
from tests.support.messaging_subject import Subject, messaging_subject

pytestmark = pytest.mark.integration

DAY = timedelta(hours=24)


@pytest.fixture(params=["fake", "postgres"])
async def subject(request: pytest.FixtureRequest, test_env: SessionEnv) -> AsyncIterator[Subject]:
    async with messaging_subject(request.param, test_env) as opened:
        yield opened


async def test_usage_counts_for_24_hours_and_a_full_sender_is_skipped_until_it_frees(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    older, newer = send(uuid.uuid4()), send(uuid.uuid4())
    sender = (ACCOUNT, older.sender)
    await repo.save_enrollments([view(older.enrollment_id), view(newer.enrollment_id)])
    await repo.add_pending_sends([older], now=now - timedelta(seconds=2))
    await repo.add_pending_sends([newer], now=now - timedelta(seconds=1))

    usage = await repo.lock_senders({sender}, claimed={newer.key}, now=now)
    assert usage[sender].used == ()
    assert usage[sender].oldest_waiting == now - timedelta(seconds=2)  # ``older``, not ours
    attempt = uuid.uuid4()
    await repo.use_capacity([(sender, attempt)], {sender: now + DAY}, now=now)

    assert await repo.claim_due(now=now + DAY - timedelta(seconds=1), limit=10) == []
    [queue] = await repo.sends_queue(now=now)
    assert (queue.account_id, queue.sender, queue.waiting, queue.due) == (
        ACCOUNT,
        older.sender,
        2,
        2,
    )
    assert (queue.used_24h, queue.blocked_until) == (1, now + DAY)
    assert queue.oldest_due_at == now - timedelta(seconds=2)

    claimed = await repo.claim_due(now=now + DAY, limit=10)
    assert [c.send.key for c in claimed] == [older.key, newer.key]  # due order
    assert [c.due_at for c in claimed] == [now - timedelta(seconds=2), now - timedelta(seconds=1)]
    later = await repo.lock_senders({sender}, claimed=set(), now=now + DAY)
    assert later[sender].used == ()  # left the window, and forgotten


async def test_capacity_given_back_frees_the_sender_at_once(subject: Subject) -> None:
    repo, now = subject.store, utc_now()
    one = send(uuid.uuid4())
    sender = (ACCOUNT, one.sender)
    await repo.save_enrollments([view(one.enrollment_id)])
    await repo.add_pending_sends([one], now=now)
    await repo.lock_senders({sender}, claimed={one.key}, now=now)
    kept, given = uuid.uuid4(), uuid.uuid4()
    await repo.use_capacity([(sender, kept), (sender, given)], {sender: now + DAY}, now=now)

    await repo.give_back_capacity([(sender, given), ((ACCOUNT, "nobody"), uuid.uuid4())])

    usage = await repo.lock_senders({sender}, claimed=set(), now=now + timedelta(seconds=1))
    assert usage[sender].used == (now,)
    [claimed] = await repo.claim_due(now=now + timedelta(seconds=1), limit=10)
    assert claimed.send.key == one.key


async def test_a_send_awaiting_renewal_is_not_an_older_send_waiting(subject: Subject) -> None:
    repo, now = subject.store, utc_now()
    lapsed = send(uuid.uuid4(), lease_until=now - timedelta(seconds=5))
    sender = (ACCOUNT, lapsed.sender)
    await repo.save_enrollments([view(lapsed.enrollment_id)])
    await repo.add_pending_sends([lapsed], now=now - timedelta(seconds=10))
    [claimed] = await repo.claim_due(now=now, limit=10)
    grant = lapsed_grant(claimed.send, now)
    assert grant is not None
    await repo.defer([Deferred(claimed.send, grant, now, after_crash=False)], now=now)

    usage = await repo.lock_senders({sender}, claimed=set(), now=now)
    assert usage[sender].oldest_waiting is None
