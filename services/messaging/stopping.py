"""Pure decisions about sends the enrollment stops before any call started: a revoked
grant (``enrollment.dispatch_revoked``) and an ended enrollment (``enrollment.exited``,
``enrollment.completed``).

Enrollment decides an exit on the enrollment row that also holds the step's grant; when a
grant is out, the exit waits for messaging's answer to the revoke. So every revoke gets
exactly one answer: ``message.cancelled`` (``dispatch_revoked``) when the send had not
been handed to a provider call (pending or parked) or was never queued at all, else the
outcome of the call under way (``sending``), or the outcome already published (a finished
send). An ended enrollment's unsent steps are cancelled at once too: a send waiting for a
renewal of its lapsed grant would otherwise never be claimed again to be cancelled.
No I/O here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.messaging.domain import SendKey
from services.messaging.projection import EnrollmentKey
from shared.contracts import RecordRef
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel

UNSTARTED = frozenset({"pending", "parked"})
"""Statuses of a send no provider call has been started for (nor will be, once stopped)."""


@dataclass(frozen=True, slots=True)
class QueuedStep:
    """A ``sends`` row as the enrollment handler sees it: which step, where it stands."""

    account_id: str
    enrollment_id: uuid.UUID
    step_index: int
    workflow_id: str
    workflow_version: int
    record: RecordRef
    step_id: str
    channel: Channel
    status: str
    dispatch_id: uuid.UUID | None
    cause_message_id: uuid.UUID | None
    correlation_id: uuid.UUID | None

    @property
    def key(self) -> SendKey:
        return (self.account_id, self.enrollment_id, self.step_index)


@dataclass(frozen=True, slots=True)
class Revoke:
    """What ``enrollment.dispatch_revoked`` asks: start no call for this step's grant."""

    account_id: str
    enrollment_id: uuid.UUID
    workflow_id: str
    workflow_version: int
    record: RecordRef
    step_index: int
    step_id: str
    dispatch_id: uuid.UUID
    cause_message_id: uuid.UUID
    correlation_id: uuid.UUID

    @property
    def key(self) -> SendKey:
        return (self.account_id, self.enrollment_id, self.step_index)


@dataclass(frozen=True, slots=True)
class EnrollmentEnded:
    """An exit or completion: none of the enrollment's unsent steps go out."""

    key: EnrollmentKey
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class Stopped:
    """``step`` is cancelled before any call: recorded, and ``message.cancelled``."""

    step: QueuedStep
    reason: CancelReason
    dispatch_id: uuid.UUID | None
    """The grant the cancel answers: the revoked one, else the row's."""


@dataclass(frozen=True, slots=True)
class NeverQueued:
    """A revoke of a step messaging never queued (its grant was refused as bad input, or
    never arrived): still answered, with ``message.cancelled``."""

    revoke: Revoke


def stop_unsent(
    changes: Iterable[Revoke | EnrollmentEnded], queued: Mapping[SendKey, QueuedStep]
) -> list[Stopped | NeverQueued]:
    """What ``changes``, in order, stop among the ``queued`` rows of their enrollments.

    A row is stopped once, by the first change that reaches it, exactly as if the changes
    were applied one by one. A revoke of a step whose send is under way or finished stops
    nothing: that call's outcome (or the one already published) is the answer.
    """
    stopped: set[SendKey] = set()
    decisions: list[Stopped | NeverQueued] = []
    for change in changes:
        if isinstance(change, Revoke):
            row = queued.get(change.key)
            if row is None:
                decisions.append(NeverQueued(change))
            elif row.status in UNSTARTED and row.key not in stopped:
                stopped.add(row.key)
                decisions.append(Stopped(row, CancelReason.DISPATCH_REVOKED, change.dispatch_id))
            continue
        for key, row in sorted(queued.items()):
            if key[:2] == change.key and row.status in UNSTARTED and key not in stopped:
                stopped.add(key)
                decisions.append(Stopped(row, change.reason, row.dispatch_id))
    return decisions
