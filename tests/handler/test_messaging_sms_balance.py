"""messaging's SMS balance on the harness: credits and settings (commands), reservations
of scheduled SMS steps, debits of sent ones, refunds of unsent ones, and the claim holding
(or failing) an SMS its account cannot cover."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.messaging.sms_balance import Kind, State
from shared.contracts.events import (
    EnrollmentStepGranted,
    FailureKind,
    MessageFailed,
    MessageSent,
)
from shared.contracts.inbound import Channel
from shared.contracts.sms_balance import RefundReason, SmsBalanceRefunded, WhenShort
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, exited, paused
from tests.support.builders.messaging_events import (
    ENROLLMENT,
    enrollment_enrolled,
    granted,
    resumed,
)
from tests.support.builders.sms_balance import configure, credit, sms_scheduled
from tests.support.fakes.messaging_harness import MessagingHarness, messaging_harness

pytestmark = pytest.mark.handler

STEP = (ACCOUNT, ENROLLMENT, 1)


@pytest.fixture
def h() -> MessagingHarness:
    return messaging_harness()


def sms_granted() -> EnrollmentStepGranted:
    return granted(ENROLLMENT, step_index=1, step_id="nudge", channel=Channel.SMS)


def balance(h: MessagingHarness, account: str = ACCOUNT) -> int:
    total, summed = (
        h.store.balances[account][0],
        sum(m.delta for m in h.store.ledger if m.account_id == account),
    )
    assert total == summed, "the balance is the sum of its movements"
    return total


def kinds(h: MessagingHarness) -> list[Kind]:
    return [m.kind for m in h.store.ledger]


async def test_a_scheduled_sms_step_of_a_credited_account_reserves_its_segments(
    h: MessagingHarness,
) -> None:
    await h.ready(credit(10), enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    outcome = await h.when(sms_scheduled(ENROLLMENT))
    assert outcome.published == []
    assert balance(h) == 9  # "Ping": one segment
    assert kinds(h) == [Kind.CREDIT, Kind.RESERVE]
    assert h.store.reservations[STEP].state is State.RESERVED


async def test_an_account_never_credited_is_not_metered_and_its_sms_goes_out(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), sms_granted())
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    assert (h.store.balances, h.store.ledger) == ({}, [])


async def test_a_sent_sms_is_debited_and_a_later_exit_refunds_nothing(
    h: MessagingHarness,
) -> None:
    await h.ready(credit(10), enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), sms_granted())
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    outcome = await h.when(exited(ENROLLMENT))
    assert outcome.published == []
    assert kinds(h) == [Kind.CREDIT, Kind.RESERVE, Kind.DEBIT]
    assert balance(h) == 9


async def test_an_exit_arriving_twice_refunds_the_unsent_segments_once(
    h: MessagingHarness,
) -> None:
    await h.ready(credit(10), enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), sms_granted())
    outcome = await h.when(exited(ENROLLMENT), exited(ENROLLMENT))
    [refunded] = [m for m in outcome.published if isinstance(m, SmsBalanceRefunded)]
    assert (refunded.payload.step_index, refunded.payload.segments) == (1, 1)
    assert (refunded.payload.balance, refunded.payload.reason) == (
        10,
        RefundReason.ENROLLMENT_EXITED,
    )
    assert balance(h) == 10
    assert kinds(h) == [Kind.CREDIT, Kind.RESERVE, Kind.REFUND]
    assert h.row(1).status == "cancelled"  # the exit cancelled the send
    assert await h.send_due() == []
    assert h.sms.calls == 0
    assert balance(h) == 10


async def test_a_pause_refunds_the_step_and_the_resume_reserves_it_again(
    h: MessagingHarness,
) -> None:
    await h.ready(credit(10), enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT))
    outcome = await h.when(paused(ENROLLMENT))
    [refunded] = outcome.published
    assert isinstance(refunded, SmsBalanceRefunded)
    assert refunded.payload.reason is RefundReason.ENROLLMENT_PAUSED
    await h.when(resumed(ENROLLMENT), sms_scheduled(ENROLLMENT))
    assert balance(h) == 9
    assert h.store.reservations[STEP].generation == 2
    assert kinds(h) == [Kind.CREDIT, Kind.RESERVE, Kind.REFUND, Kind.RESERVE]


async def test_an_sms_the_balance_cannot_cover_waits_until_a_credit_covers_it(
    h: MessagingHarness,
) -> None:
    await h.ready(configure(WhenShort.WAIT), enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), sms_granted())
    assert h.store.reservations[STEP].state is State.SHORT
    assert await h.send_due() == []
    assert h.sms.calls == 0
    await h.when(credit(3))
    assert h.store.reservations[STEP].state is State.RESERVED
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    assert balance(h) == 2
    assert kinds(h) == [Kind.CREDIT, Kind.RESERVE, Kind.DEBIT]


async def test_an_account_set_to_fail_fails_an_sms_it_cannot_cover_with_a_clear_reason(
    h: MessagingHarness,
) -> None:
    await h.ready(configure(WhenShort.FAIL), enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), sms_granted())
    [failed] = await h.send_due()
    assert isinstance(failed, MessageFailed)
    assert (failed.payload.kind, failed.payload.reason) == (
        FailureKind.REJECTED,
        "SMS balance exhausted",
    )
    assert h.sms.calls == 0
    assert balance(h) == 0
    assert h.store.reservations[STEP].state is State.REFUNDED


async def test_a_credit_id_sent_twice_credits_once_and_other_accounts_are_apart(
    h: MessagingHarness,
) -> None:
    await h.when(credit(5), credit(5), credit(7, account=OTHER_ACCOUNT))
    assert (balance(h), balance(h, OTHER_ACCOUNT)) == (5, 7)


async def test_a_failed_sms_refunds_its_segments(h: MessagingHarness) -> None:
    h.sms.refuse, h.sms.refusal = True, FailureKind.REJECTED
    await h.ready(credit(10), enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), sms_granted())
    published = await h.send_due()
    assert [type(m) for m in published] == [MessageFailed, SmsBalanceRefunded]
    assert balance(h) == 10


async def test_a_step_scheduled_before_its_account_was_credited_is_reserved_at_its_claim(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), credit(5), sms_granted())
    assert STEP not in h.store.reservations
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    assert balance(h) == 4
    assert kinds(h) == [Kind.CREDIT, Kind.RESERVE, Kind.DEBIT]


async def test_an_unreserved_step_found_short_at_its_claim_waits_for_a_credit(
    h: MessagingHarness,
) -> None:
    await h.ready(enrollment_enrolled(ENROLLMENT, phone="+14155550123"))
    await h.when(sms_scheduled(ENROLLMENT), configure(WhenShort.WAIT), sms_granted())
    assert await h.send_due() == []
    assert h.store.reservations[STEP].state is State.SHORT
    assert h.row(1).status == "pending"
    assert await h.send_due() == []  # not claimed again while it waits
    await h.when(credit(1))
    [sent] = await h.send_due()
    assert isinstance(sent, MessageSent)
    assert balance(h) == 0


async def test_an_orphaned_sms_send_cancelled_for_want_of_its_enrollment_is_refunded(
    h: MessagingHarness,
) -> None:
    await h.ready(credit(10))
    await h.when(sms_scheduled(ENROLLMENT), sms_granted())
    assert balance(h) == 9
    count, published = await h.cancel_orphans(now=h.now + timedelta(hours=1))
    assert count == 1
    [refunded] = [m for m in published if isinstance(m, SmsBalanceRefunded)]
    assert refunded.payload.reason is RefundReason.SEND_CANCELLED
    assert balance(h) == 10
