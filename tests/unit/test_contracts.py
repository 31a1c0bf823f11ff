"""The message contracts: envelope rules, partition keys and decoding (definitions, ids
and the registry are in test_contracts_registry.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.contracts import (
    InvalidMessageError,
    UnknownType,
    decode,
    topics,
)
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Exit,
    ExitPayload,
    ExitReason,
    ExitSource,
)
from shared.contracts.events import (
    DeadLettered,
    DeadLetterPayload,
    EnrollmentExited,
    ExitedPayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import (
    EmailEventPayload,
    EmailUnsubscribed,
    UserChange,
    UserChanged,
    UserChangedPayload,
)
from tests.support.builders.contracts import (
    ACCOUNT,
    AT,
    CONTACT,
    REF,
    USER,
    definition,
    document,
    manual_exit,
    raw,
)

pytestmark = pytest.mark.unit

# --- the envelope ---------------------------------------------------------------------


def test_messages_are_frozen() -> None:
    message = manual_exit()
    with pytest.raises(ValidationError, match="frozen"):
        message.account_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        message.payload.reason = ExitReason.REPLIED  # type: ignore[misc]


def test_envelopes_and_payloads_forbid_unknown_fields() -> None:
    fields = document(manual_exit())
    with pytest.raises(ValidationError) as envelope:
        Exit.model_validate({**fields, "priority": "high"})
    with pytest.raises(ValidationError) as payload:
        Exit.model_validate({**fields, "payload": {**fields["payload"], "colour": "red"}})
    assert [(e["type"], e["loc"]) for e in envelope.value.errors()] == [
        ("extra_forbidden", ("priority",))
    ]
    assert [(e["type"], e["loc"]) for e in payload.value.errors()] == [
        ("extra_forbidden", ("payload", "colour"))
    ]


def test_create_fills_type_id_and_time() -> None:
    before = datetime.now(UTC)
    first = Exit.create(
        account_id=ACCOUNT,
        payload=ExitPayload(
            record=CONTACT, reason=ExitReason.MANUAL, source=ExitSource.MANUAL, actor=USER
        ),
    )
    second = manual_exit()

    assert first.type == "enrollment.exit" == Exit.TYPE
    assert first.schema_version == 1
    assert first.message_id != second.message_id
    assert before <= first.occurred_at <= datetime.now(UTC)
    assert (first.correlation_id, first.causation_id) == (None, None)


def test_create_keeps_a_given_id_and_time() -> None:
    message_id = uuid.uuid4()
    message = Exit.create(
        account_id=ACCOUNT, payload=manual_exit().payload, message_id=message_id, occurred_at=AT
    )
    assert (message.message_id, message.occurred_at) == (message_id, AT)


def test_the_first_effect_of_a_message_is_correlated_by_its_cause_id() -> None:
    cause = manual_exit()
    effect = EnrollmentExited.create(
        account_id=ACCOUNT,
        caused_by=cause,
        payload=ExitedPayload(
            **REF,
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=USER,
            steps_completed=0,
        ),
    )
    assert effect.correlation_id == cause.message_id
    assert effect.causation_id == cause.message_id


def test_later_effects_keep_the_flow_correlation_id() -> None:
    cause = manual_exit()
    effect = Exit.create(account_id=ACCOUNT, payload=cause.payload, caused_by=cause)
    next_effect = Exit.create(account_id=ACCOUNT, payload=cause.payload, caused_by=effect)
    assert next_effect.correlation_id == cause.message_id
    assert next_effect.causation_id == effect.message_id


def test_occurred_at_needs_a_time_zone() -> None:
    fields = document(manual_exit())
    with pytest.raises(ValidationError, match="occurred_at"):
        Exit.model_validate({**fields, "occurred_at": "2026-03-02T09:30:00"})


# --- partition keys -------------------------------------------------------------------


def test_record_messages_are_keyed_by_account_and_record() -> None:
    assert manual_exit().partition_key() == "acc/contact/c-1"


def test_email_events_without_record_are_keyed_by_the_sender_address() -> None:
    unknown = EmailUnsubscribed.create(
        account_id=ACCOUNT, payload=EmailEventPayload(from_address="Alice@Acme.COM")
    )
    known = EmailUnsubscribed.create(
        account_id=ACCOUNT, payload=EmailEventPayload(record=CONTACT, from_address="a@acme.com")
    )
    assert unknown.partition_key() == "acc/email/alice@acme.com"
    assert known.partition_key() == "acc/contact/c-1"


def test_workflow_messages_are_keyed_by_workflow() -> None:
    apply = ApplyWorkflow.create(
        account_id=ACCOUNT, payload=ApplyWorkflowPayload(actor=USER, definition=definition())
    )
    applied = WorkflowApplied.create(
        account_id=ACCOUNT,
        payload=WorkflowAppliedPayload(version=2, definition=definition(), actor=USER),
    )
    assert apply.partition_key() == applied.partition_key() == "acc/workflow/onboarding"


def test_user_changes_are_keyed_by_user() -> None:
    changed = UserChanged.create(
        account_id=ACCOUNT, payload=UserChangedPayload(user_id="u-9", change=UserChange.DELETED)
    )
    assert changed.partition_key() == "acc/user/u-9"


def dead_letter(source_key: str | None) -> DeadLettered:
    return DeadLettered.create(
        account_id=ACCOUNT,
        payload=DeadLetterPayload(
            consumer="enrollment",
            source_topic=topics.COMMANDS,
            source_partition=2,
            source_offset=41,
            source_key=source_key,
            error_kind="invalid_json",
            reason="value is not JSON",
            original_value="{",
        ),
    )


def test_dead_letters_keep_the_source_key() -> None:
    assert dead_letter("acc/deal/d-7").partition_key() == "acc/deal/d-7"
    assert dead_letter(None).partition_key() == "acc/-"


# --- decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "reason"),
    [
        (b"", "invalid_json", "empty"),
        (None, "invalid_json", "empty"),
        (b"{not json", "invalid_json", "not JSON"),
        (b"\xff\xfe\x00", "invalid_json", "not JSON"),
        (b"[1, 2]", "invalid_message", "not an object"),
        (b'"enrollment.exit"', "invalid_message", "not an object"),
        (b'{"message_id": "x", "account_id": "acc"}', "invalid_message", "'type' is missing"),
        (b'{"type": ""}', "invalid_message", "'type' is missing"),
    ],
)
def test_undecodable_values_are_invalid(value: bytes | None, kind: str, reason: str) -> None:
    with pytest.raises(InvalidMessageError, match=reason) as caught:
        decode(value, topic=topics.COMMANDS)
    assert caught.value.kind == kind


def test_an_unknown_type_is_returned_not_raised() -> None:
    value = raw({"type": "email.forwarded", "message_id": "m-1", "account_id": ACCOUNT})
    assert decode(value, topic=topics.INBOUND_EMAIL) == UnknownType(
        message_id="m-1", type="email.forwarded", account_id=ACCOUNT
    )


@pytest.mark.parametrize("missing", ["message_id", "account_id"])
def test_an_unknown_type_still_needs_an_id_and_an_account(missing: str) -> None:
    fields = {"type": "email.forwarded", "message_id": "m-1", "account_id": ACCOUNT}
    del fields[missing]
    with pytest.raises(InvalidMessageError, match=missing) as caught:
        decode(raw(fields), topic=topics.INBOUND_EMAIL)
    assert caught.value.kind == "invalid_message"
    assert caught.value.envelope == fields


def test_a_type_of_another_topic_is_unknown_on_this_one() -> None:
    command = manual_exit()
    decoded = decode(command.to_json(), topic=topics.INBOUND_EMAIL)
    assert decoded == UnknownType(
        message_id=str(command.message_id), type="enrollment.exit", account_id=ACCOUNT
    )
    assert decode(command.to_json(), topic=topics.COMMANDS) == command


def test_a_missing_field_is_named_by_its_path() -> None:
    fields = document(manual_exit())
    del fields["payload"]["record"]["id"]
    with pytest.raises(InvalidMessageError) as caught:
        decode(raw(fields), topic=topics.COMMANDS)
    assert caught.value.kind == "invalid_message"
    assert caught.value.reason.startswith("enrollment.exit: ")
    assert "payload.record.id: Field required" in caught.value.reason
    assert caught.value.envelope["message_id"] == fields["message_id"]


@pytest.mark.parametrize("account_id", ["", "-leading-dash", "has space", "x" * 65, "acc/1"])
def test_a_malformed_account_id_is_invalid(account_id: str) -> None:
    fields = {**document(manual_exit()), "account_id": account_id}
    with pytest.raises(InvalidMessageError, match="account_id"):
        decode(raw(fields), topic=topics.COMMANDS)


def test_an_unknown_exit_reason_is_invalid() -> None:
    fields = document(manual_exit())
    fields["payload"]["reason"] = "bored"
    with pytest.raises(InvalidMessageError, match=r"payload\.reason"):
        decode(raw(fields), topic=topics.COMMANDS)


def test_email_addresses_are_lower_cased_and_trimmed() -> None:
    details = ContactDetails(email=" Alice@ACME.com ", aliases=("A.Smith@Acme.COM",))
    assert details.email == "alice@acme.com"
    assert details.aliases == ("a.smith@acme.com",)
    with pytest.raises(ValidationError, match="email"):
        ContactDetails(email="not-an-address")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("+14155550123", "+14155550123"),
        (" +1 (415) 555-0123 ", "+14155550123"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+33 6 12 34 56 78", "+33612345678"),
    ],
)
def test_phone_numbers_are_normalised_to_e164(given: str, stored: str) -> None:
    assert ContactDetails(phone=given).phone == stored


@pytest.mark.parametrize(
    "bad", ["4155550123", "+1 555", "+999 123456", "+1415555012a", "tel:+14155550123", "+"]
)
def test_a_phone_number_that_is_not_valid_e164_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="phone"):
        ContactDetails(phone=bad)
