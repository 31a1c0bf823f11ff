"""The message contracts: envelope rules, partition keys, decoding and the type registry."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts import (
    MESSAGE_TYPES,
    MESSAGES_BY_TOPIC,
    SYSTEM_ACTOR,
    TOPIC_OF_TYPE,
    Actor,
    ActorKind,
    InvalidMessageError,
    Message,
    RecordRef,
    RecordType,
    UnknownType,
    decode,
    derived_message_id,
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
    TriggeringEvent,
)
from shared.contracts.events import (
    DeadLettered,
    DeadLetterPayload,
    EnrollmentExited,
    ExitedPayload,
    MessageSent,
    MessageSentPayload,
    StepDue,
    StepDuePayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import (
    Channel,
    ConversationMessagePayload,
    ConversationMessageReceived,
    DealClosedPayload,
    DealWon,
    EmailEventPayload,
    EmailReplied,
    EmailRepliedPayload,
    EmailUnsubscribed,
    PageVisited,
    PageVisitedPayload,
    UserChange,
    UserChanged,
    UserChangedPayload,
)
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings

pytestmark = pytest.mark.unit

ACCOUNT = "acc"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")
USER = Actor(kind=ActorKind.USER, id="u-1")
ENROLLMENT_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
REF: dict[str, Any] = {
    "enrollment_id": ENROLLMENT_ID,
    "workflow_id": "onboarding",
    "workflow_version": 1,
    "record": CONTACT,
}


def definition(**overrides: Any) -> WorkflowDefinition:
    fields: dict[str, Any] = {
        "workflow_id": "onboarding",
        "name": "Onboarding",
        "record_type": RecordType.CONTACT,
        "steps": (Step(step_id="hello", body="Hello"),),
        **overrides,
    }
    return WorkflowDefinition(**fields)


def manual_exit(**overrides: Any) -> Exit:
    fields: dict[str, Any] = {
        "record": CONTACT,
        "reason": ExitReason.MANUAL,
        "source": ExitSource.MANUAL,
        "actor": USER,
        **overrides,
    }
    return Exit.create(account_id=ACCOUNT, payload=ExitPayload(**fields), occurred_at=AT)


def document(message: Message) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(message.to_json())
    return parsed


def raw(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


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


# --- workflow definitions -------------------------------------------------------------


def test_step_ids_are_unique_within_a_workflow() -> None:
    with pytest.raises(ValidationError, match="step_id values must be unique"):
        definition(steps=(Step(step_id="a", body="1"), Step(step_id="a", body="2")))


@pytest.mark.parametrize(
    ("record_type", "trigger"),
    [
        (RecordType.CONTACT, ExitTrigger.DEAL_WON),
        (RecordType.CONTACT, ExitTrigger.DEAL_LOST),
        (RecordType.DEAL, ExitTrigger.REPLIED),
        (RecordType.ORGANIZATION, ExitTrigger.LINK_CLICKED),
    ],
)
def test_exit_triggers_must_fit_the_record_type(
    record_type: RecordType, trigger: ExitTrigger
) -> None:
    settings = WorkflowSettings(exit_triggers=frozenset({trigger}))
    with pytest.raises(ValidationError, match=f"do not apply to {record_type.value} workflows"):
        definition(record_type=record_type, settings=settings)


def test_triggers_of_the_record_type_are_accepted() -> None:
    settings = WorkflowSettings(exit_triggers=frozenset({ExitTrigger.DEAL_WON}))
    assert definition(record_type=RecordType.DEAL, settings=settings).settings == settings


def test_a_workflow_needs_at_least_one_step() -> None:
    with pytest.raises(ValidationError, match="steps"):
        definition(steps=())


# --- ids and the registry -------------------------------------------------------------


def test_derived_message_ids_are_stable_and_distinct() -> None:
    first = derived_message_id("exited", ENROLLMENT_ID, 3)
    assert first == derived_message_id("exited", ENROLLMENT_ID, 3)
    assert first.version == 5
    assert first != derived_message_id("exited", ENROLLMENT_ID, 4)
    assert first != derived_message_id("completed", ENROLLMENT_ID, 3)


def test_every_type_belongs_to_exactly_one_topic() -> None:
    listed = Counter(model.TYPE for models in MESSAGES_BY_TOPIC.values() for model in models)
    assert [t for t, n in listed.items() if n != 1] == []
    assert set(listed) == set(MESSAGE_TYPES) == set(TOPIC_OF_TYPE)
    assert set(MESSAGES_BY_TOPIC) == {spec.name for spec in topics.TOPICS}
    assert all(model.TYPE for model in MESSAGE_TYPES.values())


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_every_type_has_a_json_schema(message_type: str) -> None:
    model = MESSAGE_TYPES[message_type]
    schema = model.model_json_schema()
    assert schema["properties"]["type"]["const"] == message_type
    assert {"message_id", "account_id", "occurred_at", "payload"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False


def one_of_each_family() -> list[Message]:
    return [
        EmailReplied.create(
            account_id=ACCOUNT,
            payload=EmailRepliedPayload(
                from_address="Alice@Acme.com", message_header_id="<r@x>", references=("<a@x>",)
            ),
        ),
        PageVisited.create(
            account_id=ACCOUNT, payload=PageVisitedPayload(record=CONTACT, url="https://x.io")
        ),
        DealWon.create(
            account_id=ACCOUNT,
            payload=DealClosedPayload(
                record=RecordRef(type=RecordType.DEAL, id="d-1"), contacts=(CONTACT,)
            ),
        ),
        ConversationMessageReceived.create(
            account_id=ACCOUNT,
            payload=ConversationMessagePayload(
                record=CONTACT, channel=Channel.CHAT, conversation_id="conv-1"
            ),
        ),
        ApplyWorkflow.create(
            account_id=ACCOUNT,
            payload=ApplyWorkflowPayload(
                actor=SYSTEM_ACTOR,
                definition=definition(
                    settings=WorkflowSettings(
                        exit_triggers=frozenset({ExitTrigger.REPLIED, ExitTrigger.UNSUBSCRIBED})
                    )
                ),
            ),
        ),
        manual_exit(),
        WorkflowApplied.create(
            account_id=ACCOUNT,
            payload=WorkflowAppliedPayload(version=3, definition=definition(), actor=USER),
        ),
        EnrollmentExited.create(
            account_id=ACCOUNT,
            payload=ExitedPayload(
                **REF,
                reason=ExitReason.REPLIED,
                source=ExitSource.TRIGGER,
                actor=SYSTEM_ACTOR,
                triggering_event=TriggeringEvent(
                    message_id=uuid.uuid4(),
                    type="email.replied",
                    topic=topics.INBOUND_EMAIL,
                    occurred_at=AT,
                ),
                steps_completed=1,
            ),
        ),
        StepDue.create(
            account_id=ACCOUNT,
            payload=StepDuePayload(
                **REF, step_index=0, step_id="hello", channel=Channel.EMAIL, due_at=AT
            ),
        ),
        MessageSent.create(
            account_id=ACCOUNT,
            payload=MessageSentPayload(
                **REF,
                step_index=0,
                step_id="hello",
                channel=Channel.EMAIL,
                provider_message_id="<m-1@offramp>",
                recipient="alice@acme.com",
                sent_at=AT + timedelta(seconds=1),
            ),
        ),
        dead_letter("acc/contact/c-1"),
    ]


def test_the_round_trip_covers_every_topic() -> None:
    assert {TOPIC_OF_TYPE[m.type] for m in one_of_each_family()} == set(MESSAGES_BY_TOPIC)


@pytest.mark.parametrize("message", one_of_each_family(), ids=lambda m: m.type)
def test_to_json_then_decode_gives_the_same_message(message: Message) -> None:
    decoded = decode(message.to_json(), topic=TOPIC_OF_TYPE[message.type])
    assert decoded == message
    assert type(decoded) is type(message)
