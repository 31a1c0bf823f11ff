"""Pure decisions about step dispatch: the grant that lets messaging send a step.

Enrollment owns the one fact a send and an exit serialize on: the enrollment row. A due
step is granted (``decide_grant``) only to an enrollment that is active at that step and
not exiting, and the grant is written on that row; an exit takes the same row lock, so it
either commits before the grant (no grant is ever made) or finds it and waits for that
send's outcome (``exits.decide_exit`` -> ``ExitPending``). Messaging starts no provider
call for a grant that was revoked or whose lease has lapsed, so an exit that waited past
the lease (``lapse_exit``) cannot be followed by a send either. No I/O here.

Send windows hold at send time through the same lease: a step is granted only while its
workflow's send window is open (``step.due`` arriving after the window closed, scheduler
lag, plans the step again at the next opening: ``Rescheduled``), and a grant's lease never
runs past the close of the opening it was granted in. Messaging starts no provider call
after a lease, so no send starts outside the window, however late it is tried (retries, a
backlog, a send limit). A lease that lapsed that way comes back as ``message.deferred``;
its renewal is granted only if the window is open when messaging tries next, else the
grant is let go and the step planned again at the next opening.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.enrollment import send_windows
from services.enrollment.domain import (
    Dispatch,
    Enrollment,
    ScheduledStep,
    Status,
    Unchanged,
    event_id,
    planned_at,
)
from services.enrollment.exits import Exited, commit_exit
from services.enrollment.steps import Settled
from shared.contracts.inbound import Channel
from shared.contracts.workflow import WorkflowDefinition


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


@dataclass(frozen=True, slots=True)
class Rescheduled:
    """The step is due while its send window is closed: no grant (any grant out is let go,
    its lease lapsed), the step is planned again at the window's next opening."""

    enrollment: Enrollment
    scheduled: ScheduledStep


def _lease_until(
    enrollment: Enrollment, definition: WorkflowDefinition | None, start: datetime, lease: timedelta
) -> datetime | Rescheduled:
    """A lease from ``start``, ended by the close of the send window's opening ``start``
    falls in; when the window is closed at ``start``, the step planned at its next opening."""
    window = definition.settings.send_window if definition else None
    opening = send_windows.open_at(window, enrollment.time_zone, start)
    if opening is not None:
        return min(start + lease, opening.closes_at)
    assert definition is not None  # noqa: S101 - without a window it is always open
    due_at = planned_at(definition, enrollment.time_zone, start)
    step = definition.steps[enrollment.current_step]
    later = replace(enrollment, next_due_at=due_at, dispatch=None)
    return Rescheduled(later, ScheduledStep(later.current_step, step, due_at, start))


def dispatch_id_for(
    account_id: str, due_message_id: uuid.UUID, enrollment_id: uuid.UUID
) -> uuid.UUID:
    """The id of the dispatch a ``step.due`` is granted as: the same on every replay."""
    return event_id("dispatch", account_id, due_message_id, enrollment_id)


def _not_current(
    enrollment: Enrollment, step: DueStep, definition: WorkflowDefinition | None
) -> str | None:
    """Why ``step`` is not the enrollment's current step, if it is not. A timer armed
    before the enrollment moved to another version (``workflow.migrate``) may fire at its
    new index: the step id says it is the old version's step."""
    if step.index != enrollment.current_step:
        return f"step {step.index} is not the current step {enrollment.current_step}"
    steps = definition.steps if definition is not None else None
    if steps is not None and (
        step.index >= len(steps) or steps[step.index].step_id != step.step_id
    ):
        return f"step {step.index} ({step.step_id}) is not a step of the enrollment's version"
    return None


def decide_grant(
    enrollment: Enrollment,
    step: DueStep,
    *,
    dispatch_id: uuid.UUID,
    lease: timedelta,
    now: datetime,
    definition: WorkflowDefinition | None = None,
) -> Granted | Rescheduled | Unchanged:
    """Grant the dispatch of ``step`` to an enrollment active at that step, once.

    A paused enrollment is not granted (its resume schedules the step again), an exiting or
    ended one never is, and a step already granted is not granted twice (the scheduler may
    fire a step again; messaging asks for a renewal when it needs one). ``definition`` is
    the enrollment's workflow version: with a send window, the lease ends with the window's
    opening, and a step due while the window is closed is planned again (``Rescheduled``).
    """
    if enrollment.status is not Status.ACTIVE:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    if enrollment.pending_exit is not None:
        return Unchanged("enrollment is exiting")
    if (why := _not_current(enrollment, step, definition)) is not None:
        return Unchanged(why)
    if enrollment.dispatch is not None and enrollment.dispatch.step_index == step.index:
        return Unchanged(f"step {step.index} is already granted")
    lease_until = _lease_until(enrollment, definition, now, lease)
    if isinstance(lease_until, Rescheduled):
        return lease_until
    granted = Dispatch(dispatch_id, step.index, step.step_id, lease_until=lease_until)
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
    definition: WorkflowDefinition | None = None,
) -> Granted | Rescheduled | Exited | Settled | Unchanged:
    """Messaging's lease of a grant lapsed before the send could start (``message.deferred``).

    ``lapsed`` is the lease messaging saw lapse: a deferral of a lease renewed since changes
    nothing. An active enrollment still holding that grant gets a new lease, counted from when
    messaging will try next. An exiting one exits now: messaging said no call started, and
    it starts none under a lapsed lease. A paused one lets the grant go (it is granted
    no more than a due step would be; its resume grants the step again). With a send
    window (``definition``), the new lease ends with the opening messaging tries in; if the
    window is closed then, the grant is let go and the step planned at its next opening.
    """
    dispatch = enrollment.dispatch
    why = _not_renewable(enrollment, dispatch_id, lapsed)
    if why is not None or dispatch is None:
        return Unchanged(why or "no grant")
    if enrollment.pending_exit is not None:
        return commit_exit(enrollment, now=now)
    if enrollment.status is Status.PAUSED:
        return Settled(replace(enrollment, dispatch=None))
    lease_until = _lease_until(enrollment, definition, max(now, next_attempt_at), lease)
    if isinstance(lease_until, Rescheduled):
        return lease_until
    return _renewed(enrollment, step, replace(dispatch, lease_until=lease_until))


def _not_renewable(enrollment: Enrollment, dispatch_id: uuid.UUID, lapsed: datetime) -> str | None:
    dispatch = enrollment.dispatch
    if not enrollment.status.live:
        return f"enrollment is {enrollment.status.value}"
    if dispatch is None or dispatch.dispatch_id != dispatch_id:
        return "the deferred dispatch is not the enrollment's grant"
    if lapsed < dispatch.lease_until:
        return "the deferral is of a lease that was renewed since"
    return None


def _renewed(enrollment: Enrollment, step: DueStep, renewed: Dispatch) -> Granted:
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
