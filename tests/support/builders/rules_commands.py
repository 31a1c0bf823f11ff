"""Builders of the account's enrollment-rule commands (``account.set_exclusivity``)."""

from __future__ import annotations

from shared.contracts.enrollment_rules import Exclusivity, SetExclusivity, SetExclusivityPayload
from tests.support.builders.enrollment_events import ACCOUNT, USER


def exclusivity_cmd(exclusivity: Exclusivity, account_id: str = ACCOUNT) -> SetExclusivity:
    payload = SetExclusivityPayload(exclusivity=exclusivity, actor=USER)
    return SetExclusivity.create(account_id=account_id, payload=payload)
