"""Offramp's public message contracts: envelope, topics and every message type."""

from shared.contracts.base import (
    SYSTEM_ACTOR,
    Actor,
    ActorKind,
    Contract,
    Message,
    RecordRef,
    RecordType,
    derived_message_id,
    utc_now,
)
from shared.contracts.registry import (
    MESSAGE_TYPES,
    MESSAGES_BY_TOPIC,
    TOPIC_OF_TYPE,
    InvalidMessageError,
    UnknownType,
    decode,
)

__all__ = [
    "MESSAGES_BY_TOPIC",
    "MESSAGE_TYPES",
    "SYSTEM_ACTOR",
    "TOPIC_OF_TYPE",
    "Actor",
    "ActorKind",
    "Contract",
    "InvalidMessageError",
    "Message",
    "RecordRef",
    "RecordType",
    "UnknownType",
    "decode",
    "derived_message_id",
    "utc_now",
]
