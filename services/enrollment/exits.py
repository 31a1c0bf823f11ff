"""Pure exit decisions: how an enrollment ends, at once or once its granted send's
outcome is in (see ``dispatch``), and which failed sends end it. No I/O here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from services.enrollment.domain import Dispatch, Enrollment, PendingExit, Status, Unchanged
from shared.contracts import Actor, ActorKind
from shared.contracts.commands import ExitReason, ExitSource, TriggeringEvent
from shared.contracts.events import CancelReason, ExclusionHit, FailureKind


@dataclass(frozen=True, slots=True)
class SentStep:
    """A step messaging sent: which one, and the provider's id of the message."""

    index: int
    step_id: str
    provider_message_id: str | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class UnsentStep:
    """A step messaging will never send: it failed for good, or was cancelled."""

    index: int
    step_id: str
    kind: FailureKind | CancelReason
    reason: str
    dispatch_id: uuid.UUID | None = None
    """The grant messaging answered for (None: a send from before grants existed)."""


@dataclass(frozen=True, slots=True)
class Exited:
    enrollment: Enrollment
    reason: ExitReason
    source: ExitSource
    actor: Actor
    triggering_event: TriggeringEvent | None
    unsent: UnsentStep | None = None
    """The step whose send ended the enrollment, or that was revoked by the exit."""
    sent: SentStep | None = None
    """The step that went out while the exit waited for it (it counts as completed)."""
    exclusion: ExclusionHit | None = None
    """The exclusion rule (and version) that took it out, when that is why it exited."""

    @property
    def steps_completed(self) -> int:
        return self.enrollment.steps_completed


@dataclass(frozen=True, slots=True)
class ExitPending:
    """An exit decided while a step's dispatch is granted: the grant is revoked, and the
    exit commits when messaging answers with that send's outcome (``commit_exit``)."""

    enrollment: Enrollment
    dispatch: Dispatch
    pending: PendingExit

    @property
    def step_id(self) -> str:
        return self.dispatch.step_id


def decide_exit(
    enrollment: Enrollment,
    *,
    reason: ExitReason,
    source: ExitSource,
    actor: Actor,
    triggering_event: TriggeringEvent | None,
    agents_may_stop: bool,
    now: datetime,
    exclusion: ExclusionHit | None = None,
) -> Exited | ExitPending | Unchanged:
    """End a live enrollment once; an ended or exiting one stays as it was (exit is
    idempotent). With a step's dispatch granted, the exit waits for that send's outcome,
    so that no send starts after an exit has committed."""
    if not enrollment.status.live:
        return Unchanged(
            f"enrollment already {enrollment.status.value}", f"already_{enrollment.status.value}"
        )
    if enrollment.pending_exit is not None:
        return Unchanged("enrollment already exiting", "exiting")
    by_user = actor.kind is ActorKind.USER
    if source in (ExitSource.MANUAL, ExitSource.BULK) and by_user and not agents_may_stop:
        return Unchanged("the workflow does not let agents stop it", "agents_may_not_stop")
    pending = PendingExit(
        reason, source, actor, triggering_event, decided_at=now, exclusion=exclusion
    )
    if enrollment.dispatch is not None:
        return ExitPending(replace(enrollment, pending_exit=pending), enrollment.dispatch, pending)
    return commit_exit(replace(enrollment, pending_exit=pending), now=now)


def commit_exit(enrollment: Enrollment, *, now: datetime) -> Exited:
    """The exit ``enrollment`` was waiting for, now: its dispatch is settled, or its
    lease has lapsed (messaging starts no call after it)."""
    pending = enrollment.pending_exit
    if pending is None:
        raise ValueError("commit_exit needs an enrollment with a pending exit")
    exited = replace(
        enrollment,
        status=Status.EXITED,
        next_due_at=None,
        ended_at=now,
        exit_reason=pending.reason,
        dispatch=None,
        pending_exit=None,
    )
    return Exited(
        exited,
        pending.reason,
        pending.source,
        pending.actor,
        pending.triggering_event,
        exclusion=pending.exclusion,
    )


def exit_reason_for(kind: FailureKind | CancelReason) -> ExitReason | None:
    """Why a step that will never go out ends its enrollment; None when it ends nothing.

    A hard bounce is the recipient's address gone for good (``hard_bounced``, as the same
    bounce reported upstream would be); every other permanent failure, and a step with no
    one to send it to, leaves the enrollment unable to go on (``send_failed``). A send
    cancelled because the enrollment exited, paused or completed is that change's echo.
    """
    if kind is FailureKind.HARD_BOUNCE:
        return ExitReason.HARD_BOUNCED
    if isinstance(kind, FailureKind) or kind is CancelReason.NO_RECIPIENT:
        return ExitReason.SEND_FAILED
    return None
