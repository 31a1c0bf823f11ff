"""Builders of the SMS balance's commands, and of the scheduled SMS step ("nudge", step 1
of ``workflow_applied``'s workflow: "Ping", one segment) they are reserved for."""

from __future__ import annotations

import uuid

from shared.contracts.events import EnrollmentStepScheduled, StepScheduledPayload
from shared.contracts.inbound import Channel
from shared.contracts.sms_balance import (
    ConfigurePayload,
    ConfigureSmsBalance,
    CreditPayload,
    CreditSmsBalance,
    WhenShort,
)
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER, ref


def credit(segments: int, credit_id: str = "c-1", account: str = ACCOUNT) -> CreditSmsBalance:
    return CreditSmsBalance.create(
        account_id=account,
        payload=CreditPayload(credit_id=credit_id, segments=segments, actor=USER),
    )


def configure(when_short: WhenShort, account: str = ACCOUNT) -> ConfigureSmsBalance:
    return ConfigureSmsBalance.create(
        account_id=account, payload=ConfigurePayload(when_short=when_short, actor=USER)
    )


def sms_scheduled(enrollment_id: uuid.UUID, account: str = ACCOUNT) -> EnrollmentStepScheduled:
    """Step 1 ("nudge", an SMS) of ``enrollment_id`` is scheduled."""
    payload = StepScheduledPayload(
        **ref(enrollment_id), step_index=1, step_id="nudge", channel=Channel.SMS, due_at=T0
    )
    return EnrollmentStepScheduled.create(account_id=account, payload=payload)
