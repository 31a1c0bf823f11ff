"""Builders of CRM record data (associations between contacts, organizations, deals) and
deal stage changes, as trigger-evaluator reads them."""

from __future__ import annotations

from typing import Any

from shared.contracts import RecordRef, RecordType
from shared.contracts.inbound import (
    AssociationChange,
    AssociationChanged,
    AssociationChangedPayload,
    DealStageChanged,
    DealStageChangedPayload,
    DealStatus,
    RecordDeleted,
    RecordDeletedPayload,
    RecordUpserted,
    RecordUpsertedPayload,
)
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.inbound_events import inbound


def contact(record_id: str) -> RecordRef:
    return RecordRef(type=RecordType.CONTACT, id=record_id)


def organization(record_id: str) -> RecordRef:
    return RecordRef(type=RecordType.ORGANIZATION, id=record_id)


def deal(record_id: str) -> RecordRef:
    return RecordRef(type=RecordType.DEAL, id=record_id)


def upserted(record: RecordRef, *associations: RecordRef, account: str = ACCOUNT) -> RecordUpserted:
    payload = RecordUpsertedPayload(record=record, associations=associations)
    return inbound(RecordUpserted, payload, account=account)


def associated(
    record: RecordRef, other: RecordRef, *, added: bool = True, account: str = ACCOUNT
) -> AssociationChanged:
    change = AssociationChange.ADDED if added else AssociationChange.REMOVED
    payload = AssociationChangedPayload(record=record, associated=other, change=change)
    return inbound(AssociationChanged, payload, account=account)


def deleted(record: RecordRef, *, account: str = ACCOUNT) -> RecordDeleted:
    return inbound(RecordDeleted, RecordDeletedPayload(record=record), account=account)


def stage_changed(
    record: RecordRef,
    stage: str,
    status: DealStatus,
    *,
    previous: tuple[str, DealStatus] | None = None,
    account: str = ACCOUNT,
    **fields: Any,
) -> DealStageChanged:
    payload = DealStageChangedPayload(
        record=record,
        stage=stage,
        status=status,
        previous_stage=previous[0] if previous else None,
        previous_status=previous[1] if previous else None,
        **fields,
    )
    return inbound(DealStageChanged, payload, account=account)
