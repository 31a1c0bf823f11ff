"""The envelope every Offramp message shares, and the small value types inside payloads.

Every message on every Offramp topic is one JSON object: the envelope fields below plus a
``payload`` whose shape is fixed by ``type``. Consumers de-duplicate on ``message_id``;
producers that may re-send (upstream systems, retries) must reuse the same id.
"""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

AccountId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=ACCOUNT_PATTERN),
]
"""A tenant id. Every message carries one and nothing ever crosses accounts."""

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"),
]
"""Ids of records, workflows, users and steps: URL-safe, at most 128 characters."""


def _known_time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


TimeZoneName = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_known_time_zone)
]
"""An IANA time zone name ``zoneinfo`` knows, e.g. ``Europe/Berlin``."""

EmailAddress = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+$",
    ),
]
"""An email address, normalised to lower case (matching is case-insensitive)."""


def _e164(value: str) -> str:
    """``value`` as a valid E.164 number (``+`` and the country code first), normalised."""
    if not value.startswith("+"):
        raise ValueError("a phone number must be in E.164 form: + and the country code first")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


PhoneNumber = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=32),
    AfterValidator(_e164),
]
"""A phone number in E.164 form (``+14155550123``), checked with ``phonenumbers`` and
normalised (spaces, dashes and brackets dropped)."""

# Offramp's namespace for deterministic (uuid5) message ids: a command derived from an
# event gets the same id every time the event is replayed, so the consumer drops repeats.
OFFRAMP_NAMESPACE = uuid.UUID("0f7a3c1e-5d2b-4c8e-9a41-7b6e2d9f0c15")


def derived_message_id(*parts: object) -> uuid.UUID:
    """A message id that is the same every time it is derived from the same parts."""
    return uuid.uuid5(OFFRAMP_NAMESPACE, "/".join(str(p) for p in parts))


def utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every contract model: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RecordType(StrEnum):
    CONTACT = "contact"
    ORGANIZATION = "organization"
    DEAL = "deal"


class RecordRef(Contract):
    """Which record of the account a message is about."""

    type: RecordType
    id: Identifier

    def key(self, account_id: str) -> str:
        return f"{account_id}/{self.type.value}/{self.id}"


class ActorKind(StrEnum):
    USER = "user"
    SYSTEM = "system"
    API = "api"


class Actor(Contract):
    """Who asked for an action: a user of the account, an API client, or Offramp itself."""

    kind: ActorKind
    id: Identifier | None = None


SYSTEM_ACTOR = Actor(kind=ActorKind.SYSTEM, id="offramp")


class Message(Contract):
    """The envelope. Subclasses pin ``type`` and give ``payload`` its model."""

    TYPE: ClassVar[str] = ""
    """The value of ``type`` this subclass pins (taken from its ``type`` default)."""

    message_id: uuid.UUID = Field(description="Unique per message; the de-duplication key.")
    type: str = Field(description="The message type, e.g. `email.replied`.")
    schema_version: Literal[1] = Field(1, description="Version of this type's payload schema.")
    account_id: AccountId = Field(description="The tenant; nothing crosses accounts.")
    occurred_at: AwareDatetime = Field(description="When the fact happened, with a time zone.")
    correlation_id: uuid.UUID | None = Field(
        None, description="Shared by every message of one flow (e.g. one reply and its exit)."
    )
    causation_id: uuid.UUID | None = Field(
        None, description="The `message_id` of the message that caused this one."
    )
    payload: Any

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["type"].default
        if isinstance(default, str) and default:
            cls.TYPE = default

    def partition_key(self) -> str:
        """The Kafka key: one record's messages land on one partition, in order."""
        record = getattr(self.payload, "record", None)
        if isinstance(record, RecordRef):
            return record.key(self.account_id)
        return f"{self.account_id}/-"

    @classmethod
    def create(
        cls,
        *,
        account_id: str,
        payload: Any,
        message_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
        caused_by: Message | None = None,
    ) -> Self:
        """Build a message; ``caused_by`` carries the correlation id forward."""
        correlation_id = None
        causation_id = None
        if caused_by is not None:
            correlation_id = caused_by.correlation_id or caused_by.message_id
            causation_id = caused_by.message_id
        return cls(
            message_id=message_id or uuid.uuid4(),
            type=cls.TYPE,
            account_id=account_id,
            occurred_at=occurred_at or utc_now(),
            correlation_id=correlation_id,
            causation_id=causation_id,
            payload=payload,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
