"""Pure decisions about a granted step that arrives before its workflow version.

``enrollment.step_granted`` and ``workflow.applied`` are on two topics, not ordered with
each other, so a step can be granted before messaging has the version that says what it
is. Rather than retry it inline (blocking the consumer) and then
dead-letter it, messaging parks it: a ``sends`` row in status ``parked``, without content.
``workflow.applied`` of that version re-drives it in its own transaction; a step still
parked after ``OFFRAMP_PARK_MAX_S`` fails with ``message.failed`` (kind ``rejected``), so
the enrollment hears that its step will never go out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.messaging.domain import Send, SendKey, WorkflowStep, pending_send
from shared.contracts import RecordRef
from shared.contracts.events import FailureKind
from shared.contracts.inbound import Channel

VersionKey = tuple[str, str, int]
"""(account id, workflow id, version): one workflow version."""


@dataclass(frozen=True, slots=True)
class ParkedStep:
    """A granted step waiting for its workflow version: what the grant said of it."""

    enrollment_id: uuid.UUID
    step_index: int
    account_id: str
    workflow_id: str
    workflow_version: int
    record: RecordRef
    step_id: str
    channel: Channel
    provider_message_id: str
    parked_at: datetime
    cause_message_id: uuid.UUID
    """The ``enrollment.step_granted`` that parked it."""
    correlation_id: uuid.UUID
    dispatch_id: uuid.UUID | None = None
    """The grant it is parked under (None: parked before grants existed)."""
    lease_until: datetime | None = None

    @property
    def key(self) -> SendKey:
        return (self.account_id, self.enrollment_id, self.step_index)

    @property
    def version(self) -> VersionKey:
        return (self.account_id, self.workflow_id, self.workflow_version)


@dataclass(frozen=True, slots=True)
class ParkedFailed:
    """A parked step that will never be sent: recorded as failed, and ``message.failed``."""

    parked: ParkedStep
    reason: str
    failed_at: datetime
    kind: FailureKind = FailureKind.REJECTED


def matches(step: WorkflowStep, *, step_id: str, channel: Channel) -> bool:
    """Whether a granted step (its id and channel) is the version's step at its index."""
    return step.step_id == step_id and step.channel is channel


def redrive(
    parked: ParkedStep, step: WorkflowStep, *, message_id_domain: str, default_sender: str
) -> Send:
    """The pending send a parked step becomes once its version is known, under its grant
    and with the flow ids of the grant that parked it."""
    return pending_send(
        step,
        enrollment_id=parked.enrollment_id,
        record=parked.record,
        message_id_domain=message_id_domain,
        default_sender=default_sender,
        cause_message_id=parked.cause_message_id,
        correlation_id=parked.correlation_id,
        dispatch_id=parked.dispatch_id,
        lease_until=parked.lease_until,
    )


def expires_before(now: datetime, *, max_age_s: float) -> datetime:
    """Steps parked before this have waited too long for their version."""
    return now - timedelta(seconds=max_age_s)


def never_arrived(parked: ParkedStep, *, now: datetime, max_age_s: float) -> ParkedFailed:
    """The version of ``parked`` did not arrive in time: the step fails, with the reason."""
    return ParkedFailed(
        parked,
        f"workflow version never arrived: step {parked.step_index} ({parked.step_id!r}) of "
        f"workflow {parked.workflow_id!r} version {parked.workflow_version} waited "
        f"{max_age_s:g} s for its workflow.applied; replay that event, then enroll again",
        now,
    )
