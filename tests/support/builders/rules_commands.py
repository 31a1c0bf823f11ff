"""Builders of the enrollment-rule commands (``account.set_exclusivity``,
``enrollment.bulk_enroll``)."""

from __future__ import annotations

from shared.contracts import RecordRef
from shared.contracts.commands import BulkEnroll, BulkEnrollPayload, ContactDetails, EnrollTarget
from shared.contracts.enrollment_rules import Exclusivity, SetExclusivity, SetExclusivityPayload
from tests.support.builders.enrollment_events import ACCOUNT, USER


def exclusivity_cmd(exclusivity: Exclusivity, account_id: str = ACCOUNT) -> SetExclusivity:
    payload = SetExclusivityPayload(exclusivity=exclusivity, actor=USER)
    return SetExclusivity.create(account_id=account_id, payload=payload)


def bulk_enroll_cmd(
    *records: RecordRef, workflow_id: str = "onboarding", account_id: str = ACCOUNT
) -> BulkEnroll:
    payload = BulkEnrollPayload(
        workflow_id=workflow_id,
        records=tuple(
            EnrollTarget(record=r, contact=ContactDetails(email=f"{r.id}@acme.com"))
            for r in records
        ),
        actor=USER,
    )
    return BulkEnroll.create(account_id=account_id, payload=payload)
