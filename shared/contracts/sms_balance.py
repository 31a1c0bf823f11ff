"""The per-account SMS balance (messaging owns it): commands that credit it or set what
happens when it runs short, and the refunds messaging publishes.

``sms_balance.credit`` and ``sms_balance.configure`` travel on ``offramp.commands.v1``,
keyed by account (``<account_id>/sms-balance``): an account's balance commands apply in
order. ``sms_balance.refunded`` travels on ``offramp.messaging.events.v1``.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.contracts.base import Actor, Contract, Identifier, Message


class WhenShort(StrEnum):
    """What an SMS step does when the account's balance cannot cover its segments."""

    WAIT = "wait"
    """It waits (it is not sent) until a credit covers it; the default."""
    FAIL = "fail"
    """It fails: ``message.failed`` of kind ``rejected``, reason "SMS balance exhausted"."""


class SmsBalanceCommand(Message):
    """Balance commands of one account apply in the order they were sent."""

    def partition_key(self) -> str:
        return f"{self.account_id}/sms-balance"


class CreditPayload(Contract):
    credit_id: Identifier = Field(
        description="Names this credit: a credit id already applied is never applied twice."
    )
    segments: int = Field(ge=1, le=100_000_000, description="Segments added to the balance.")
    actor: Actor


class CreditSmsBalance(SmsBalanceCommand):
    """Add segments to the account's SMS balance. An account is metered from its first
    credit on: before that, its SMS steps are not counted against any balance."""

    type: Literal["sms_balance.credit"] = "sms_balance.credit"
    payload: CreditPayload


class ConfigurePayload(Contract):
    when_short: WhenShort = WhenShort.WAIT
    actor: Actor


class ConfigureSmsBalance(SmsBalanceCommand):
    """Set what the account's SMS steps do when its balance is short (meters the account,
    with a balance of 0 if it had none)."""

    type: Literal["sms_balance.configure"] = "sms_balance.configure"
    payload: ConfigurePayload


class RefundReason(StrEnum):
    ENROLLMENT_EXITED = "enrollment_exited"
    ENROLLMENT_COMPLETED = "enrollment_completed"
    ENROLLMENT_PAUSED = "enrollment_paused"
    SEND_CANCELLED = "send_cancelled"
    SEND_FAILED = "send_failed"


class RefundedPayload(Contract):
    enrollment_id: uuid.UUID
    step_index: int = Field(ge=0)
    segments: int = Field(ge=1, description="The step's reserved segments, given back.")
    balance: int = Field(ge=0, description="The account's balance after this refund.")
    reason: RefundReason


class SmsBalanceRefunded(Message):
    """The segments reserved for a step that will not be sent (now) went back to the
    account's balance; published once per reservation."""

    type: Literal["sms_balance.refunded"] = "sms_balance.refunded"
    payload: RefundedPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/sms-balance"


SMS_BALANCE_COMMANDS: tuple[type[Message], ...] = (CreditSmsBalance, ConfigureSmsBalance)
SMS_BALANCE_EVENTS: tuple[type[Message], ...] = (SmsBalanceRefunded,)
