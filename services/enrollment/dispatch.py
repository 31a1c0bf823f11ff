"""Pure decisions about step dispatch: the grant that lets messaging send a step.

Enrollment owns the one fact a send and an exit serialize on: the enrollment row. A due
step is granted (``decide_grant``) only to an enrollment that is active at that step and
not exiting, and the grant is written on that row; an exit takes the same row lock, so it
either commits before the grant (no grant is ever made) or finds it and waits for that
send's outcome (``exits.decide_exit`` -> ``ExitPending``). Messaging starts no provider
call for a grant that was revoked or whose lease has lapsed, so an exit that waited past
the lease (``lapse_exit``) cannot be followed by a send either. No I/O here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.enrollment.domain import Dispatch, Enrollment, Status, Unchanged, event_id
from services.enrollment.exits import Exited, commit_exit
from services.enrollment.steps import Settled
from shared.contracts.inbound import Channel


@dataclass(frozen=True, slots=True)
class DueStep:
    """A step whose time has come, as the scheduler says it (``step.due``)."""

    index: int
    step_id: str
    channel: Channel
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Granted:
    """Messaging may send ``step`` until ``enrollment.dispatch.lease_until``."""

    enrollment: Enrollment
    step: DueStep
    dispatch: Dispatch
    renewal: bool = False


def dispatch_id_for(
    account_id: str, due_message_id: uuid.UUID, enrollment_id: uuid.UUID
) -> uuid.UUID:
    """The id of the dispatch a ``step.due`` is granted as: the same on every replay."""
    return event_id("dispatch", account_id, due_message_id, enrollment_id)


def decide_grant(
    enrollment: Enrollment,
    step: DueStep,
    *,
    dispatch_id: uuid.UUID,
    lease: timedelta,
    now: datetime,
) -> Granted | Unchanged:
    """Grant the dispatch of ``step`` to an enrollment active at that step, once.

    A paused enrollment is not granted (its resume schedules the step again), an exiting or
    ended one never is, and a step already granted is not granted twice (the scheduler may
    fire a step again; messaging asks for a renewal when it needs one).
    """
    if enrollment.status is not Status.ACTIVE:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    if enrollment.pending_exit is not None:
        return Unchanged("enrollment is exiting")
    if step.index != enrollment.current_step:
        return Unchanged(f"step {step.index} is not the current step {enrollment.current_step}")
    if enrollment.dispatch is not None and enrollment.dispatch.step_index == step.index:
        return Unchanged(f"step {step.index} is already granted")
    granted = Dispatch(dispatch_id, step.index, step.step_id, lease_until=now + lease)
    return Granted(replace(enrollment, dispatch=granted), step, granted)


def decide_renewal(
    enrollment: Enrollment,
    step: DueStep,
    *,
    dispatch_id: uuid.UUID,
    lapsed: datetime,
    next_attempt_at: datetime,
    lease: timedelta,
    now: datetime,
) -> Granted | Exited | Settled | Unchanged:
    """Messaging's lease of a grant lapsed before the send could start (``message.deferred``).

    ``lapsed`` is the lease messaging saw lapse: a deferral of a lease renewed since changes
    nothing. An active enrollment still holding that grant gets a new lease, counted from when
    messaging will try next. An exiting one exits now: messaging said no call started, and
    it starts none under a lapsed lease. A paused one lets the grant go (it is granted
    no more than a due step would be; its resume grants the step again).
    """
    dispatch = enrollment.dispatch
    if not enrollment.status.live:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    if dispatch is None or dispatch.dispatch_id != dispatch_id:
        return Unchanged("the deferred dispatch is not the enrollment's grant")
    if lapsed < dispatch.lease_until:
        return Unchanged("the deferral is of a lease that was renewed since")
    if enrollment.pending_exit is not None:
        return commit_exit(enrollment, now=now)
    if enrollment.status is Status.PAUSED:
        return Settled(replace(enrollment, dispatch=None))
    renewed = replace(dispatch, lease_until=max(now, next_attempt_at) + lease)
    return Granted(replace(enrollment, dispatch=renewed), step, renewed, renewal=True)


def lapse_exit(enrollment: Enrollment, *, skew: timedelta, now: datetime) -> Exited | Unchanged:
    """Commit an exit whose grant's lease has lapsed (messaging never answered: down or far
    behind). ``skew`` is how far the two services' clocks may disagree."""
    dispatch = enrollment.dispatch
    if not enrollment.status.live or enrollment.pending_exit is None:
        return Unchanged("no exit is pending")
    if dispatch is not None and now < dispatch.lease_until + skew:
        return Unchanged("the grant's lease has not lapsed")
    return commit_exit(enrollment, now=now)
