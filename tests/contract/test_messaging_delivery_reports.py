"""``MessagingStore``'s delivery-report statements: the fake and PostgreSQL alike find the
sends reports name by (account, provider_message_id) and keep each one's latest report."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from services.messaging.delivery import DeliveryRecorded
from services.messaging.domain import Sent
from shared.contracts import utc_now
from shared.contracts.inbound import DeliveryStatus
from tests.conftest import SessionEnv
from tests.support.builders.messaging_rows import ACCOUNT, OTHER_ACCOUNT, send, view
from tests.support.messaging_subject import Subject, hand_over, messaging_subject

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "postgres"])
async def subject(request: pytest.FixtureRequest, test_env: SessionEnv) -> AsyncIterator[Subject]:
    async with messaging_subject(request.param, test_env) as opened:
        yield opened


async def test_reports_find_their_sends_and_keep_the_latest_report(subject: Subject) -> None:
    repo = subject.store
    now = utc_now()
    ours, pending, theirs = (
        send(uuid.uuid4()),
        send(uuid.uuid4()),
        send(uuid.uuid4(), 0, OTHER_ACCOUNT),
    )
    await repo.save_enrollments(
        [
            view(ours.enrollment_id),
            view(pending.enrollment_id),
            view(theirs.enrollment_id, account=OTHER_ACCOUNT),
        ]
    )
    await repo.add_pending_sends([ours, pending, theirs], now=now)
    await repo.mark_sent([Sent(await hand_over(repo, ours), "+14155550123", now)])

    refs = {
        (ACCOUNT, ours.provider_message_id),
        (ACCOUNT, pending.provider_message_id),
        (ACCOUNT, theirs.provider_message_id),  # another account's id: not ours to find
        (ACCOUNT, "<unknown@elsewhere.test>"),
    }
    found = await repo.sends_reported(refs)
    assert {ref: (r.send.key, r.status, r.delivery_status) for ref, r in found.items()} == {
        (ACCOUNT, ours.provider_message_id): (ours.key, "sent", None),
        (ACCOUNT, pending.provider_message_id): (pending.key, "pending", None),
    }

    later = now + timedelta(seconds=5)
    await repo.record_deliveries(
        [
            DeliveryRecorded(ours.key, DeliveryStatus.SENT, None, now),
            DeliveryRecorded(ours.key, DeliveryStatus.UNDELIVERED, "code 30005", later),
        ]
    )
    await repo.record_deliveries([])
    again = await repo.sends_reported({(ACCOUNT, ours.provider_message_id)})
    [reported] = again.values()
    assert (reported.delivery_status, reported.delivery_reported_at) == (
        DeliveryStatus.UNDELIVERED,
        later,
    )
