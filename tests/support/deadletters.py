"""A builder of dead letters as a consumer writes them, for the dead-letter tooling tests."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from shared.contracts import derived_message_id, utc_now
from shared.contracts.events import DeadLettered, DeadLetterPayload


def dead_letter(
    *,
    source_topic: str,
    offset: int,
    value: bytes,
    partition: int = 0,
    key: bytes | None = b"acme/contact/c-1",
    headers: dict[str, str] | None = None,
    consumer: str = "offramp-enrollment",
    account: str = "acme",
    kind: str = "invalid_message",
    reason: str = "payload.record: field required",
    occurred_at: datetime | None = None,
    **extra: Any,
) -> DeadLettered:
    """What ``shared.consumer`` publishes for the record at ``source_topic[partition]@offset``.

    ``extra`` takes payload fields newer contracts add (``original_truncated``, ...).
    """

    def text(raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return "b64:" + base64.b64encode(raw).decode()

    return DeadLettered.create(
        message_id=derived_message_id("deadletter", consumer, source_topic, partition, offset),
        account_id=account,
        occurred_at=occurred_at or utc_now(),
        payload=DeadLetterPayload(
            consumer=consumer,
            source_topic=source_topic,
            source_partition=partition,
            source_offset=offset,
            source_key=text(key) if key is not None else None,
            error_kind=kind,
            reason=reason,
            original_value=text(value),
            original_headers=headers or {},
            **extra,
        ),
    )
