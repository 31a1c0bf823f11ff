"""``MessagingStore``'s SMS balance, the fake and PostgreSQL alike: accounts metered from
their first credit, books locked and read with the reservations a run names, saved
movements keeping the balance the sum of the ledger, and the claim flagging an SMS its
metered account has not reserved (and holding one found short while the account waits)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from services.messaging import sms_balance
from services.messaging.sms_balance import Kind, State
from shared.contracts import utc_now
from shared.contracts.inbound import Channel
from shared.contracts.sms_balance import RefundReason, WhenShort
from tests.conftest import SessionEnv
from tests.support.builders.messaging_rows import ACCOUNT, OTHER_ACCOUNT, send, view
from tests.support.messaging_subject import Subject, messaging_subject

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "postgres"])
async def subject(request: pytest.FixtureRequest, test_env: SessionEnv) -> AsyncIterator[Subject]:
    async with messaging_subject(request.param, test_env) as opened:
        yield opened


async def test_an_account_is_metered_only_from_its_first_credit_or_setting(
    subject: Subject,
) -> None:
    repo = subject.store
    assert await repo.sms_books({ACCOUNT}) == {}
    await repo.meter_accounts({ACCOUNT})
    await repo.meter_accounts({ACCOUNT})
    books = await repo.sms_books({ACCOUNT, OTHER_ACCOUNT})
    assert list(books) == [ACCOUNT]
    assert (books[ACCOUNT].balance, books[ACCOUNT].when_short) == (0, WhenShort.WAIT)


async def test_saved_movements_keep_the_balance_the_sum_of_the_ledger(subject: Subject) -> None:
    repo, now = subject.store, utc_now()
    first, second = uuid.uuid4(), uuid.uuid4()
    await repo.meter_accounts({ACCOUNT})
    [book] = (await repo.sms_books({ACCOUNT})).values()
    sms_balance.credit(book, "c-1", 5, now)
    sms_balance.reserve(book, (ACCOUNT, first, 0), 3, now)
    sms_balance.reserve(book, (ACCOUNT, second, 0), 4, now)  # short: 2 left
    book.when_short = WhenShort.FAIL
    await repo.save_sms_books([book])

    again = await repo.sms_books(
        {ACCOUNT},
        steps={(ACCOUNT, first, 0)},
        credit_ids={(ACCOUNT, "c-1"), (ACCOUNT, "c-2")},
        short=True,
    )
    book = again[ACCOUNT]
    assert (book.balance, book.when_short, book.credits) == (2, WhenShort.FAIL, {"c-1"})
    states = {k: r.state for k, r in book.reservations.items()}
    assert states == {(ACCOUNT, first, 0): State.RESERVED, (ACCOUNT, second, 0): State.SHORT}
    assert await repo.sms_ledger_sum(ACCOUNT) == (2, 2)

    refunded = sms_balance.refund(book, (ACCOUNT, first, 0), now, RefundReason.ENROLLMENT_EXITED)
    assert refunded is not None
    assert refunded.kind is Kind.REFUND
    await repo.save_sms_books([book])
    by_enrollment = await repo.sms_books({ACCOUNT}, enrollments={(ACCOUNT, first)})
    [reservation] = by_enrollment[ACCOUNT].reservations.values()
    assert (reservation.state, reservation.generation) == (State.REFUNDED, 1)
    assert await repo.sms_ledger_sum(ACCOUNT) == (5, 5)


async def test_the_claim_flags_an_unreserved_sms_and_holds_a_short_one_while_it_waits(
    subject: Subject,
) -> None:
    repo, now = subject.store, utc_now()
    sms = replace(send(uuid.uuid4()), channel=Channel.SMS)
    await repo.save_enrollments([view(sms.enrollment_id, phone="+14155550123")])
    await repo.add_pending_sends([sms], now=now - timedelta(seconds=1))
    [unmetered] = await repo.claim_due(now=now, limit=10)
    assert unmetered.unreserved is False

    await repo.meter_accounts({ACCOUNT})
    [never_reserved] = await repo.claim_due(now=now, limit=10)
    assert never_reserved.unreserved is True  # the claim reserves it first

    [book] = (await repo.sms_books({ACCOUNT})).values()
    sms_balance.reserve(book, sms.key, 1, now)  # short: the balance is 0
    await repo.save_sms_books([book])
    assert await repo.claim_due(now=now, limit=10) == []  # waits for a credit

    [book] = (await repo.sms_books({ACCOUNT})).values()
    book.when_short = WhenShort.FAIL
    book.dirty = True
    await repo.save_sms_books([book])
    [flagged] = await repo.claim_due(now=now, limit=10)
    assert flagged.unreserved is True  # to fail

    [book] = (await repo.sms_books({ACCOUNT}, short=True)).values()
    sms_balance.credit(book, "c-1", 1, now)  # reserves the short step
    await repo.save_sms_books([book])
    [covered] = await repo.claim_due(now=now, limit=10)
    assert covered.unreserved is False
