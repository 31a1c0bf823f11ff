"""The SMS balance's use cases (``sms_balance`` decides): credits and the account setting
(commands), reservations of scheduled SMS steps, debits of sent ones and refunds of those
that will not be sent. Each loads the run's books once (locking the accounts' balances),
decides in memory, saves once and publishes ``sms_balance.refunded`` per refund.

The handlers here run in the consumer's batch transaction; ``settle`` also runs in the
sender's transactions (claim and outcome), for debits and refunds of its outcomes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from services.messaging import sms_balance
from services.messaging.domain import Failed, Send, WorkflowStep
from services.messaging.parking import ParkedFailed
from services.messaging.ports import MessagingStore
from services.messaging.projection import EnrollmentKey
from shared.contracts import derived_message_id
from shared.contracts.events import EnrollmentStepScheduled, FailureKind
from shared.contracts.inbound import Channel
from shared.contracts.sms_balance import (
    ConfigureSmsBalance,
    CreditSmsBalance,
    RefundedPayload,
    RefundReason,
    SmsBalanceRefunded,
    WhenShort,
)
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

BalanceCommand = CreditSmsBalance | ConfigureSmsBalance


async def balance_commands(
    uow: UnitOfWork[MessagingStore], commands: list[BalanceCommand], now: datetime
) -> None:
    """Apply credits (once per credit id) and settings in order; a credit reserves the
    account's short steps it covers, oldest first, and wakes the senders."""
    accounts = {c.account_id for c in commands}
    await uow.store.meter_accounts(accounts)
    credit_ids = {
        (c.account_id, c.payload.credit_id) for c in commands if isinstance(c, CreditSmsBalance)
    }
    books = await uow.store.sms_books(accounts, credit_ids=credit_ids, short=bool(credit_ids))
    reserved = False
    for command in commands:
        book = books[command.account_id]
        if isinstance(command, ConfigureSmsBalance):
            book.when_short, book.dirty = command.payload.when_short, True
            log.info("sms_balance_configured", when_short=book.when_short.value)
            continue
        before = len(book.movements)
        moved = sms_balance.credit(book, command.payload.credit_id, command.payload.segments, now)
        reserved |= len(book.movements) > before + 1
        log.info(
            "sms_balance_credited" if moved else "sms_balance_credit_already_applied",
            account_id=command.account_id,
            credit_id=command.payload.credit_id,
            segments=command.payload.segments,
            balance=book.balance,
        )
    await uow.store.save_sms_books(list(books.values()))
    if reserved:
        await uow.store.wake_senders()


async def reserve_scheduled(
    uow: UnitOfWork[MessagingStore], events: list[EnrollmentStepScheduled], now: datetime
) -> None:
    """Reserve the segments of each scheduled SMS step of a metered account (its body as
    its workflow version has it); other channels and accounts are not counted."""
    sms = [e for e in events if e.payload.channel is Channel.SMS]
    if not sms:
        return
    books = await uow.store.sms_books({e.account_id for e in sms}, steps={_key(e) for e in sms})
    sms = [e for e in sms if e.account_id in books]
    if not sms:
        return
    steps = await uow.store.workflow_steps({_step(e) for e in sms})
    ended = await _ended(uow, {_key(e)[:2] for e in sms})
    for event in sms:
        step: WorkflowStep | None = steps.get(_step(event))
        key = _key(event)
        if step is None or key[:2] in ended:
            # Not projected yet (its grant reserves nothing either: the claim holds it
            # until a credit or a re-schedule), or a late duplicate of an ended enrollment.
            log.info("sms_step_not_reserved", enrollment_id=str(key[1]), step_index=key[2])
            continue
        reservation = sms_balance.reserve(
            books[key[0]], key, sms_balance.sms_segments(step.body), now
        )
        if reservation is not None:
            log.info(
                "sms_segments_reserved",
                enrollment_id=str(key[1]),
                step_index=key[2],
                segments=reservation.segments,
                state=reservation.state.value,
                balance=books[key[0]].balance,
            )
    await uow.store.save_sms_books(list(books.values()))


async def _ended(
    uow: UnitOfWork[MessagingStore], keys: Collection[EnrollmentKey]
) -> set[EnrollmentKey]:
    views = await uow.store.enrollments_for_update(keys)
    return {k for k, v in views.items() if v.status.ended}


async def settle(
    uow: UnitOfWork[MessagingStore],
    *,
    now: datetime,
    debited: Collection[sms_balance.StepKey] = (),
    refunded: Mapping[sms_balance.StepKey, RefundReason] | None = None,
    enrollments: Mapping[EnrollmentKey, RefundReason] | None = None,
) -> None:
    """Debit ``debited`` steps, refund ``refunded`` ones and every open reservation of
    ``enrollments`` (except a step whose call is under way or done: its outcome settles
    it). Costs one lookup for a run without a metered account."""
    refunded = refunded or {}
    enrollments = enrollments or {}
    accounts = {k[0] for k in debited} | {k[0] for k in refunded} | {k[0] for k in enrollments}
    if not accounts:
        return
    books = await uow.store.sms_books(
        accounts, steps=set(debited) | set(refunded), enrollments=set(enrollments)
    )
    if not books:
        return
    for key in debited:
        if key[0] in books:
            sms_balance.debit(books[key[0]], key, now)
    reasons = dict(refunded)
    metered = {k: r for k, r in enrollments.items() if k[0] in books}
    keep: set[sms_balance.StepKey] = set()
    if metered:
        queued = await uow.store.queued_of(set(metered))
        keep = {k for k, row in queued.items() if row.status in ("sending", "sent")}
    for enrollment, reason in metered.items():
        for key in sms_balance.open_steps(books[enrollment[0]], enrollment):
            if key not in keep:
                reasons.setdefault(key, reason)
    for key, reason in reasons.items():
        if key[0] not in books:
            continue
        book = books[key[0]]
        movement = sms_balance.refund(book, key, now, reason)
        if movement is not None:
            uow.publish(sms_balance_refunded(movement, key, reason))
            log.info(
                "sms_segments_refunded",
                enrollment_id=str(key[1]),
                step_index=key[2],
                segments=movement.segments,
                reason=reason.value,
                balance=movement.balance,
            )
    await uow.store.save_sms_books(list(books.values()))


def sms_balance_refunded(
    movement: sms_balance.Movement, key: sms_balance.StepKey, reason: RefundReason
) -> SmsBalanceRefunded:
    """``sms_balance.refunded``: its id derived from the reservation (its generation
    included), so a reservation's refund always has one id."""
    account_id, enrollment_id, step_index = key
    return SmsBalanceRefunded.create(
        message_id=derived_message_id(
            SmsBalanceRefunded.TYPE, account_id, enrollment_id, step_index, movement.generation
        ),
        account_id=account_id,
        occurred_at=movement.at,
        payload=RefundedPayload(
            enrollment_id=enrollment_id,
            step_index=step_index,
            segments=movement.segments,
            balance=movement.balance,
            reason=reason,
        ),
    )


def _key(event: EnrollmentStepScheduled) -> sms_balance.StepKey:
    return (event.account_id, event.payload.enrollment_id, event.payload.step_index)


def _step(event: EnrollmentStepScheduled) -> tuple[str, str, int, int]:
    p = event.payload
    return (event.account_id, p.workflow_id, p.workflow_version, p.step_index)


async def settle_outcomes(
    uow: UnitOfWork[MessagingStore],
    *,
    now: datetime,
    sent: Collection[Send] = (),
    failed: Collection[Send] = (),
    cancelled: Collection[Send] = (),
) -> None:
    """The sender's recorded outcomes: a sent SMS is debited, one failed for good or
    cancelled is refunded (only SMS sends; nothing for an unmetered account)."""
    debited = {s.key for s in sent if s.channel is Channel.SMS}
    refunded = {s.key: RefundReason.SEND_FAILED for s in failed if s.channel is Channel.SMS}
    for send in cancelled:
        if send.channel is Channel.SMS:
            refunded[send.key] = RefundReason.SEND_CANCELLED
    if debited or refunded:
        await settle(uow, now=now, debited=debited, refunded=refunded)


def balance_exhausted(send: Send, now: datetime) -> Failed:
    """A claimed SMS its account could not cover, set to fail when short: failed for good,
    no provider call made."""
    return Failed(send, sms_balance.EXHAUSTED, None, now, FailureKind.REJECTED)


async def reserve_claimed(
    uow: UnitOfWork[MessagingStore], sends: Collection[Send], now: datetime
) -> tuple[set[sms_balance.StepKey], set[sms_balance.StepKey]]:
    """At the claim, reserve the segments of SMS sends their metered account has not
    reserved (a step scheduled before its account was metered or its workflow version
    projected, or short until now); returns (the keys that may go out, those to fail as
    their account says). The rest stay pending, short, until a credit covers them."""
    if not sends:
        return set(), set()
    books = await uow.store.sms_books({s.account_id for s in sends}, steps={s.key for s in sends})
    covered: set[sms_balance.StepKey] = set()
    failing: set[sms_balance.StepKey] = set()
    for send in sends:
        book = books.get(send.account_id)
        if book is None:
            covered.add(send.key)
            continue
        sms_balance.reserve(book, send.key, sms_balance.sms_segments(send.body), now)
        if book.reservations[send.key].state is sms_balance.State.RESERVED:
            covered.add(send.key)
        elif book.when_short is WhenShort.FAIL:
            failing.add(send.key)
        else:
            log.info(
                "sms_waits_for_balance",
                enrollment_id=str(send.enrollment_id),
                step_index=send.step_index,
                balance=book.balance,
            )
    await uow.store.save_sms_books(list(books.values()))
    return covered, failing


async def refund_failed_parked(
    uow: UnitOfWork[MessagingStore], failed: Collection[ParkedFailed], now: datetime
) -> None:
    """Parked SMS steps that will never be sent (their version never came, or says they
    cannot be): whatever their schedule reserved goes back."""
    refunded = {
        f.parked.key: RefundReason.SEND_FAILED for f in failed if f.parked.channel is Channel.SMS
    }
    if refunded:
        await settle(uow, now=now, refunded=refunded)
