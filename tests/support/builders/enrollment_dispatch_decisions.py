"""Enrollment dispatch decisions in one call each, for the domain tests."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.enrollment.dispatch import (
    DueStep,
    Granted,
    Rescheduled,
    decide_grant,
    decide_renewal,
)
from services.enrollment.domain import Enrollment, Unchanged
from services.enrollment.exits import (
    Exited,
    ExitPending,
    SentStep,
    UnsentStep,
    decide_exit,
)
from services.enrollment.steps import Settled
from shared.contracts import SYSTEM_ACTOR, Actor, ActorKind, topics
from shared.contracts.commands import ExitReason, ExitSource, TriggeringEvent
from shared.contracts.events import CancelReason, FailureKind
from shared.contracts.inbound import Channel
from tests.support.builders.enrollment_dispatch import (
    LEASE,
    REPLY,
)
from tests.support.builders.enrollment_domain import (
    NOW,
    definition,
)

HOUR = 3600
THREE_STEPS = definition(0, HOUR, HOUR)
USER = Actor(kind=ActorKind.USER, id="u-1")
OUTCOME = TriggeringEvent(
    message_id=uuid.uuid4(),
    type="message.cancelled",
    topic=topics.MESSAGING_EVENTS,
    occurred_at=NOW,
)


def due(index: int = 0) -> DueStep:
    return DueStep(index, f"s{index}", Channel.EMAIL, NOW)


def grant(
    current: Enrollment, index: int = 0, *, dispatch_id: uuid.UUID | None = None
) -> Granted | Unchanged:
    decision = decide_grant(
        current, due(index), dispatch_id=dispatch_id or uuid.uuid4(), lease=LEASE, now=NOW
    )
    assert not isinstance(decision, Rescheduled)  # no send window here
    return decision


def exit_of(
    current: Enrollment, reason: ExitReason = ExitReason.REPLIED
) -> Exited | ExitPending | Unchanged:
    return decide_exit(
        current,
        reason=reason,
        source=ExitSource.TRIGGER,
        actor=SYSTEM_ACTOR,
        triggering_event=REPLY,
        agents_may_stop=True,
        now=NOW,
    )


def sent(index: int = 0) -> SentStep:
    return SentStep(index, f"s{index}", f"<m-{index}@offramp.test>", NOW)


def unsent(kind: FailureKind | CancelReason, index: int = 0) -> UnsentStep:
    return UnsentStep(index, f"s{index}", kind, f"the send ended: {kind.value}")


def renew(
    current: Enrollment, dispatch_id: uuid.UUID, *, next_attempt_at: datetime, now: datetime = NOW
) -> Granted | Exited | Settled | Unchanged:
    decision = decide_renewal(
        current,
        due(current.current_step),
        dispatch_id=dispatch_id,
        lapsed=current.dispatch.lease_until if current.dispatch else NOW,
        next_attempt_at=next_attempt_at,
        lease=LEASE,
        now=now,
    )
    assert not isinstance(decision, Rescheduled)  # no send window here
    return decision
