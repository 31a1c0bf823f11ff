"""What every enrollment handler does after deciding: save the run's changes, write
their history and publish their messages, in order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.enrollment import dispatch, domain, exits, history, messages, steps
from services.enrollment.ports import EnrollmentKey, EnrollmentStore, VersionKey
from shared.contracts import Message
from shared.uow import UnitOfWork


def key(enrollment: domain.Enrollment) -> EnrollmentKey:
    return (enrollment.account_id, enrollment.enrollment_id)


def version_key(enrollment: domain.Enrollment) -> VersionKey:
    return (enrollment.account_id, enrollment.workflow_id, enrollment.workflow_version)


Uow = UnitOfWork[EnrollmentStore]


async def record(
    uow: Uow, decided: Sequence[tuple[messages.AnyDecision, Message]], now: datetime
) -> None:
    """Write the history of a run's decisions and publish their messages, in order."""
    await uow.store.add_history(
        [
            entry
            for decision, cause in decided
            for entry in history.entries(decision, caused_by=cause.message_id, at=now)
        ]
    )
    for decision, cause in decided:
        for message in messages.of(decision, cause):
            uow.publish(message)


Change = (
    exits.Exited
    | exits.ExitPending
    | steps.Settled
    | steps.ScheduleNext
    | steps.Complete
    | dispatch.Granted
    | dispatch.Rescheduled
)


async def save_changes(store: EnrollmentStore, decisions: Sequence[Change]) -> None:
    """Save a run's exits (one statement) and its other changed enrollments (one more):
    pending exits, settled grants, progress. An exit is the last thing that happens to an
    enrollment in a run (an exited one is decided no further)."""
    ended = [d for d in decisions if isinstance(d, exits.Exited)]
    exited = {key(x.enrollment) for x in ended}
    await store.save_progress(
        [
            d.enrollment
            for d in decisions
            if not isinstance(d, exits.Exited) and key(d.enrollment) not in exited
        ]
    )
    await store.save_exits(ended)
