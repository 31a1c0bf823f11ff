"""The CRM record contracts: record.upserted, record.deleted, association.changed and
deal.stage_changed (what exclusion rules read), next to the older CRM types; and
exclusion commands too malformed to be answered (dead letters, not rejections)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts import (
    InvalidMessageError,
    Message,
    RecordRef,
    RecordType,
    decode,
    topics,
)
from shared.contracts.inbound import (
    CRM_EVENTS,
    AssociationChange,
    AssociationChanged,
    AssociationChangedPayload,
    DealStageChanged,
    DealStageChangedPayload,
    DealStatus,
    RecordDeleted,
    RecordDeletedPayload,
    RecordFieldChanged,
    RecordUpserted,
    RecordUpsertedPayload,
)
from tests.support.builders.contracts import ACCOUNT, AT, CONTACT

pytestmark = pytest.mark.unit

ORG = RecordRef(type=RecordType.ORGANIZATION, id="o-1")
DEAL = RecordRef(type=RecordType.DEAL, id="d-1")


def upserted(**payload: Any) -> RecordUpserted:
    return RecordUpserted.create(
        account_id=ACCOUNT,
        occurred_at=AT,
        payload=RecordUpsertedPayload(**{"record": CONTACT, **payload}),
    )


def crm_document(message_type: str, payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "message_id": "8b0c6f7e-0d7c-4a43-9a40-0d5b0c1e2f33",
            "type": message_type,
            "account_id": ACCOUNT,
            "occurred_at": "2026-03-02T09:30:00Z",
            "payload": payload,
        }
    ).encode()


def test_the_crm_topic_carries_the_record_types_and_keeps_the_old_ones() -> None:
    types = [model.TYPE for model in CRM_EVENTS]
    assert types[:6] == [
        "record.field_changed",
        "deal.won",
        "deal.lost",
        "meeting.booked",
        "record.owner_assigned",
        "user.changed",
    ]
    assert set(types[6:]) == {
        "record.upserted",
        "record.deleted",
        "association.changed",
        "deal.stage_changed",
    }


def test_a_record_upserted_carries_fields_by_internal_name_with_lists_for_multi_select() -> None:
    message = upserted(
        fields={"lifecyclestage": "customer", "tags": ("vip", "partner"), "employees": 120},
        email="Ann@Acme.COM",
        aliases=("ann.b@acme.com",),
        company_name="Acme",
        domains=("www.Acme.com.",),
        associations=(ORG, DEAL),
    )
    decoded = decode(message.to_json(), topic=topics.INBOUND_CRM)

    assert decoded == message
    assert isinstance(decoded, RecordUpserted)
    assert decoded.payload.fields["tags"] == ("vip", "partner")
    assert decoded.payload.email == "ann@acme.com"
    assert decoded.partition_key() == "acc/contact/c-1"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (True, True),
        (3, 3),
        (2.5, 2.5),
        ("2026-01-01", "2026-01-01"),
        (None, None),
        ([1, "a"], (1, "a")),
    ],
)
def test_field_values_keep_their_json_type(value: object, kept: object) -> None:
    decoded = decode(
        crm_document(
            "record.upserted",
            {"record": {"type": "contact", "id": "c-1"}, "fields": {"f": value}},
        ),
        topic=topics.INBOUND_CRM,
    )
    assert isinstance(decoded, RecordUpserted)
    assert decoded.payload.fields["f"] == kept
    assert type(decoded.payload.fields["f"]) is type(kept)


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ({"fields": {"f": {"nested": 1}}}, "fields.f"),
        ({"fields": {"f": [[1]]}}, "fields.f"),
        ({"fields": {"bad name": 1}}, "fields.bad name"),
        ({"domains": ["acme .com"]}, "domains.0"),
        ({"domains": ["ann@acme.com"]}, "domains.0"),
        ({"email": "not-an-address"}, "email"),
    ],
)
def test_a_malformed_record_upserted_is_invalid_with_the_field_named(
    payload: dict[str, Any], complaint: str
) -> None:
    document = crm_document(
        "record.upserted", {"record": {"type": "contact", "id": "c-1"}, **payload}
    )
    with pytest.raises(InvalidMessageError, match=f"record.upserted: payload.{complaint}"):
        decode(document, topic=topics.INBOUND_CRM)


def test_an_association_links_two_different_records() -> None:
    message = AssociationChanged.create(
        account_id=ACCOUNT,
        payload=AssociationChangedPayload(
            record=CONTACT, associated=ORG, change=AssociationChange.ADDED
        ),
    )
    assert decode(message.to_json(), topic=topics.INBOUND_CRM) == message
    with pytest.raises(ValidationError, match="associated with itself"):
        AssociationChangedPayload(
            record=CONTACT, associated=CONTACT, change=AssociationChange.REMOVED
        )


@pytest.mark.parametrize(
    ("previous", "status", "flags"),
    [
        (None, DealStatus.OPEN, (True, False, False)),
        (DealStatus.OPEN, DealStatus.OPEN, (False, False, False)),
        (DealStatus.OPEN, DealStatus.WON, (False, True, False)),
        (DealStatus.OPEN, DealStatus.LOST, (False, False, True)),
        (DealStatus.LOST, DealStatus.OPEN, (True, False, False)),
    ],
)
def test_a_stage_change_says_whether_the_deal_opened_was_won_or_lost(
    previous: DealStatus | None, status: DealStatus, flags: tuple[bool, bool, bool]
) -> None:
    payload = DealStageChangedPayload(
        record=DEAL, stage="closedwon", status=status, previous_status=previous
    )
    message = DealStageChanged.create(account_id=ACCOUNT, payload=payload)
    decoded = decode(message.to_json(), topic=topics.INBOUND_CRM)

    assert decoded == message
    assert (payload.opened, payload.won, payload.lost) == flags


def test_a_stage_change_is_about_a_deal() -> None:
    with pytest.raises(ValidationError, match="record must be a deal"):
        DealStageChangedPayload(record=CONTACT, stage="s1", status=DealStatus.OPEN)


def test_a_record_deleted_and_the_old_field_change_round_trip() -> None:
    messages: list[Message] = [
        RecordDeleted.create(account_id=ACCOUNT, payload=RecordDeletedPayload(record=ORG)),
        RecordFieldChanged.model_validate_json(
            crm_document(
                "record.field_changed",
                {
                    "record": {"type": "contact", "id": "c-1"},
                    "field": "lifecyclestage",
                    "old_value": {"any": "json"},
                    "new_value": "customer",
                },
            )
        ),
    ]
    for message in messages:
        assert decode(message.to_json(), topic=topics.INBOUND_CRM) == message


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ({"actor": {"kind": "user"}}, "payload.definition: Field required"),
        (
            {
                "actor": {"kind": "user"},
                "definition": {"rule_id": "r", "name": "n", "when": {"conditions": []}},
            },
            "payload.definition.when.conditions",
        ),
        (
            {
                "actor": {"kind": "user"},
                "definition": {
                    "rule_id": "r",
                    "name": "n",
                    "when": {"conditions": [{"field": "x", "operator": "is", "value": {}}]},
                },
            },
            "payload.definition.when.conditions.0",
        ),
    ],
)
def test_a_malformed_rule_command_is_a_dead_letter_not_a_rejection(
    payload: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(InvalidMessageError, match=f"exclusion_rule.put: {complaint}"):
        decode(crm_document("exclusion_rule.put", payload), topic=topics.COMMANDS)
