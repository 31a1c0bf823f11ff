"""The message contracts: workflow definitions, derived ids, the type registry, and the
round trip of one message of every family."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from pydantic import ValidationError

from shared.contracts import (
    MESSAGE_TYPES,
    MESSAGES_BY_TOPIC,
    SYSTEM_ACTOR,
    TOPIC_OF_TYPE,
    Message,
    RecordRef,
    RecordType,
    decode,
    derived_message_id,
    topics,
)
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ExitReason,
    ExitSource,
    TriggeringEvent,
)
from shared.contracts.events import (
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
    EmailReplied,
    EmailRepliedPayload,
    PageVisited,
    PageVisitedPayload,
)
from shared.contracts.workflow import ExitTrigger, Step, WorkflowSettings
from tests.support.builders.contracts import (
    ACCOUNT,
    AT,
    CONTACT,
    ENROLLMENT_ID,
    REF,
    USER,
    definition,
    manual_exit,
)
from tests.support.builders.exclusion_messages import exclusion_messages
from tests.support.deadletters import dead_letter

pytestmark = pytest.mark.unit

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
        dead_letter(source_topic=topics.COMMANDS, offset=41, value=b"{", key=b"acc/contact/c-1"),
        *exclusion_messages(),
    ]


def test_the_round_trip_covers_every_topic() -> None:
    assert {TOPIC_OF_TYPE[m.type] for m in one_of_each_family()} == set(MESSAGES_BY_TOPIC)


@pytest.mark.parametrize("message", one_of_each_family(), ids=lambda m: m.type)
def test_to_json_then_decode_gives_the_same_message(message: Message) -> None:
    decoded = decode(message.to_json(), topic=TOPIC_OF_TYPE[message.type])
    assert decoded == message
    assert type(decoded) is type(message)
