"""Pure enrollment decisions: who may enter a workflow, when steps run, how it ends.

No I/O here: handlers load the state, call these functions, and save what they return.
A decision carries every fact its outputs need (the saved row, the history entry and the
outgoing event are all built from it, see ``history`` and ``messages``), so nothing is
copied from the command that caused it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from services.enrollment.errors import MissingWorkflowVersionError
from shared.contracts import SYSTEM_ACTOR, Actor, ActorKind, RecordRef, derived_message_id
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource, TriggeringEvent
from shared.contracts.events import CancelReason, ExclusionHit, FailureKind, Rejection
from shared.contracts.workflow import ReenrollmentPolicy, Step, WorkflowDefinition


class Status(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    EXITED = "exited"

    @property
    def live(self) -> bool:
        return self in (Status.ACTIVE, Status.PAUSED)


@dataclass(frozen=True, slots=True)
class WorkflowVersion:
    account_id: str
    workflow_id: str
    version: int
    definition: WorkflowDefinition


@dataclass(frozen=True, slots=True)
class Enrollment:
    enrollment_id: uuid.UUID
    account_id: str
    workflow_id: str
    workflow_version: int
    record: RecordRef
    status: Status
    current_step: int
    steps_completed: int
    enrolled_at: datetime
    next_due_at: datetime | None = None
    ended_at: datetime | None = None
    exit_reason: ExitReason | None = None
    paused_until: datetime | None = None
    """When a timed pause ends (the scheduler then resumes it)."""
    pause_id: uuid.UUID | None = None
    """The pause the enrollment is in: the id of its ``enrollment.paused``."""


def event_id(
    kind: str, account_id: str, cause_id: uuid.UUID, subject: uuid.UUID | str
) -> uuid.UUID:
    """The id of the ``kind`` of event a message causes about ``subject``.

    Same cause, same id: a replayed command never publishes a second event. The account is
    part of it because upstream ids are only unique within an account: two accounts'
    commands with one message id must never be taken for one another's.
    """
    return derived_message_id(kind, account_id, cause_id, subject)


def enrollment_id_for(account_id: str, enroll_message_id: uuid.UUID, workflow_id: str) -> uuid.UUID:
    """The id of the enrollment an ``enrollment.enroll`` creates: the same on every replay,
    never the same for two accounts."""
    return event_id("enrollment", account_id, enroll_message_id, workflow_id)


def pause_id_for(
    account_id: str, pause_message_id: uuid.UUID, enrollment_id: uuid.UUID
) -> uuid.UUID:
    """The id of the pause an ``enrollment.pause`` puts an enrollment in, which is also the
    id of the ``enrollment.paused`` that announces it: the same on every replay."""
    return event_id("paused", account_id, pause_message_id, enrollment_id)


def definition_hash(definition: WorkflowDefinition) -> str:
    return hashlib.sha256(definition.model_dump_json().encode()).hexdigest()


def next_version(
    current_version: int | None, current_hash: str | None, new_hash: str
) -> int | None:
    """The version an applied definition becomes, or None when it changes nothing."""
    if current_version is None:
        return 1
    if current_hash == new_hash:
        return None
    return current_version + 1


@dataclass(frozen=True, slots=True)
class Unchanged:
    why: str


@dataclass(frozen=True, slots=True)
class VersionApplied:
    """A definition became a new version of its workflow (new enrollments use it)."""

    account_id: str
    definition: WorkflowDefinition
    version: int
    definition_hash: str
    actor: Actor


def decide_apply(
    head: tuple[int, str] | None, *, account_id: str, definition: WorkflowDefinition, actor: Actor
) -> VersionApplied | Unchanged:
    """A new version of the workflow, unless ``definition`` is its current one.

    ``head`` is the workflow's current (version, definition hash), None for a new workflow.
    """
    new_hash = definition_hash(definition)
    version = next_version(head[0] if head else None, head[1] if head else None, new_hash)
    if version is None:
        return Unchanged("the definition is the current version")
    return VersionApplied(account_id, definition, version, new_hash, actor)


@dataclass(frozen=True, slots=True)
class ScheduledStep:
    """The step an enrollment runs next, and when."""

    index: int
    step: Step
    due_at: datetime


def _scheduled(enrollment: Enrollment, step: Step, due_at: datetime) -> ScheduledStep:
    return ScheduledStep(enrollment.current_step, step, due_at)


@dataclass(frozen=True, slots=True)
class Admitted:
    enrollment: Enrollment
    scheduled: ScheduledStep
    contact: ContactDetails | None
    actor: Actor

    @property
    def first_step(self) -> Step:
        return self.scheduled.step


@dataclass(frozen=True, slots=True)
class Refused:
    rejections: tuple[Rejection, ...]
    account_id: str
    workflow_id: str
    record: RecordRef
    actor: Actor


def decide_enrollment(
    *,
    workflow: WorkflowVersion | None,
    workflow_id: str,
    record: RecordRef,
    account_id: str,
    previous: list[Enrollment],
    now: datetime,
    enrollment_id: uuid.UUID,
    contact: ContactDetails | None,
    actor: Actor,
    excluded: Sequence[Rejection] = (),
) -> Admitted | Refused:
    """Admit ``record`` into the workflow's current version, or say every reason why not.

    ``previous`` holds the record's earlier enrollments in this workflow, any status;
    ``excluded`` the exclusion rules that reject it (``exclusion_handlers.screen_enrolls``).
    """
    rejections = [*_rejections(workflow, workflow_id, record, previous, now), *excluded]
    if rejections or workflow is None:
        return Refused(tuple(rejections), account_id, workflow_id, record, actor)
    first = workflow.definition.steps[0]
    due_at = now + timedelta(seconds=first.delay_seconds)
    enrollment = Enrollment(
        enrollment_id=enrollment_id,
        account_id=account_id,
        workflow_id=workflow.workflow_id,
        workflow_version=workflow.version,
        record=record,
        status=Status.ACTIVE,
        current_step=0,
        steps_completed=0,
        enrolled_at=now,
        next_due_at=due_at,
    )
    return Admitted(enrollment, _scheduled(enrollment, first, due_at), contact, actor)


def _rejections(
    workflow: WorkflowVersion | None,
    workflow_id: str,
    record: RecordRef,
    previous: list[Enrollment],
    now: datetime,
) -> list[Rejection]:
    if workflow is None:
        return [
            Rejection(
                code="unknown_workflow", detail=f"no workflow {workflow_id!r} in this account"
            )
        ]
    definition = workflow.definition
    rejections: list[Rejection] = []
    if record.type != definition.record_type:
        rejections.append(
            Rejection(
                code="record_type_mismatch",
                detail=(
                    f"a {definition.record_type.value} workflow cannot enroll a {record.type.value}"
                ),
            )
        )
    if any(e.status.live for e in previous):
        rejections.append(
            Rejection(code="already_enrolled", detail="the record is already in this workflow")
        )
    elif previous:
        rejections.extend(_reenrollment_rejections(definition, previous, now))
    return rejections


def _reenrollment_rejections(
    definition: WorkflowDefinition, previous: list[Enrollment], now: datetime
) -> list[Rejection]:
    settings = definition.settings
    if settings.reenrollment is ReenrollmentPolicy.NEVER:
        return [Rejection(code="reenrollment_not_allowed", detail="the workflow never re-enrolls")]
    latest = max(previous, key=lambda e: e.enrolled_at)
    min_days = settings.min_days_between_enrollments
    if min_days and now - latest.enrolled_at < timedelta(days=min_days):
        return [
            Rejection(
                code="reenrollment_too_soon",
                detail=f"the workflow allows re-enrollment {min_days} days after the last one",
            )
        ]
    return []


@dataclass(frozen=True, slots=True)
class SentStep:
    """A step messaging sent: which one, and the provider's id of the message."""

    index: int
    step_id: str
    provider_message_id: str | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleNext:
    enrollment: Enrollment
    sent: SentStep
    scheduled: ScheduledStep

    @property
    def step(self) -> Step:
        return self.scheduled.step


@dataclass(frozen=True, slots=True)
class Complete:
    enrollment: Enrollment
    sent: SentStep


def on_step_sent(
    enrollment: Enrollment, definition: WorkflowDefinition, sent: SentStep
) -> ScheduleNext | Complete | Unchanged:
    """A step went out: schedule the next one after its delay, or complete.

    A paused enrollment still records a step that was already on its way when it paused
    (resuming schedules the next one).
    """
    if not enrollment.status.live:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    if sent.index != enrollment.current_step:
        return Unchanged(f"step {sent.index} is not the current step {enrollment.current_step}")
    done = replace(enrollment, steps_completed=enrollment.steps_completed + 1)
    following = sent.index + 1
    if following >= len(definition.steps):
        completed = replace(done, status=Status.COMPLETED, next_due_at=None, ended_at=sent.sent_at)
        return Complete(completed, sent)
    step = definition.steps[following]
    due_at = sent.sent_at + timedelta(seconds=step.delay_seconds)
    after = replace(done, current_step=following, next_due_at=due_at)
    return ScheduleNext(after, sent, _scheduled(after, step, due_at))


@dataclass(frozen=True, slots=True)
class UnsentStep:
    """A step messaging will never send: it failed for good, or was cancelled."""

    index: int
    step_id: str
    kind: FailureKind | CancelReason
    reason: str


@dataclass(frozen=True, slots=True)
class Exited:
    enrollment: Enrollment
    reason: ExitReason
    source: ExitSource
    actor: Actor
    triggering_event: TriggeringEvent | None
    unsent: UnsentStep | None = None
    """The step whose send ended the enrollment, when that is why it exited."""
    exclusion: ExclusionHit | None = None
    """The exclusion rule (and version) that took it out, when that is why it exited."""

    @property
    def steps_completed(self) -> int:
        return self.enrollment.steps_completed


def decide_exit(
    enrollment: Enrollment,
    *,
    reason: ExitReason,
    source: ExitSource,
    actor: Actor,
    triggering_event: TriggeringEvent | None,
    agents_may_stop: bool,
    now: datetime,
) -> Exited | Unchanged:
    """End a live enrollment once; an ended one stays as it was (exit is idempotent)."""
    if not enrollment.status.live:
        return Unchanged(f"enrollment already {enrollment.status.value}")
    by_user = actor.kind is ActorKind.USER
    if source in (ExitSource.MANUAL, ExitSource.BULK) and by_user and not agents_may_stop:
        return Unchanged("the workflow does not let agents stop it")
    exited = replace(
        enrollment, status=Status.EXITED, next_due_at=None, ended_at=now, exit_reason=reason
    )
    return Exited(exited, reason, source, actor, triggering_event)


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


def on_step_unsent(
    enrollment: Enrollment, unsent: UnsentStep, *, trigger: TriggeringEvent, now: datetime
) -> Exited | Unchanged:
    """Exit an enrollment whose current step will never be sent (it would wait forever
    at that step, and block the record's re-enrollment); ``trigger`` is messaging's
    report of it. Exits once, like any exit."""
    reason = exit_reason_for(unsent.kind)
    if reason is None:
        return Unchanged(f"the send was cancelled ({unsent.kind.value}): nothing to do")
    if enrollment.status.live and unsent.index != enrollment.current_step:
        return Unchanged(f"step {unsent.index} is not the current step {enrollment.current_step}")
    decision = decide_exit(
        enrollment,
        reason=reason,
        source=ExitSource.TRIGGER,
        actor=SYSTEM_ACTOR,
        triggering_event=trigger,
        agents_may_stop=True,
        now=now,
    )
    if isinstance(decision, Unchanged):
        return decision
    return replace(decision, unsent=unsent)


@dataclass(frozen=True, slots=True)
class Paused:
    enrollment: Enrollment
    until: datetime | None
    reason: str
    actor: Actor
    pause_id: uuid.UUID


def decide_pause(
    enrollment: Enrollment,
    *,
    until: datetime | None,
    reason: str,
    actor: Actor,
    pause_id: uuid.UUID,
) -> Paused | Unchanged:
    """Hold an active enrollment at its current step, until ``until`` or a resume.

    ``pause_id`` names this pause (``pause_id_for``): the scheduler's timer resumes only
    the pause it was armed for.
    """
    if enrollment.status is not Status.ACTIVE:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    held = replace(enrollment, status=Status.PAUSED, paused_until=until, pause_id=pause_id)
    return Paused(held, until, reason, actor, pause_id)


@dataclass(frozen=True, slots=True)
class Resumed:
    enrollment: Enrollment
    actor: Actor
    scheduled: ScheduledStep


def decide_resume(
    enrollment: Enrollment,
    workflow: WorkflowVersion | None,
    *,
    actor: Actor,
    now: datetime,
    pause_id: uuid.UUID | None = None,
) -> Resumed | Unchanged:
    """Resume a paused enrollment; its current step runs at once if its time has passed.

    ``workflow`` is the enrollment's version: the step it resumes at comes from it. With
    ``pause_id`` (a timed pause's end), only that pause ends: a timer of a pause that was
    already resumed by hand changes nothing, whatever the enrollment did since.
    """
    if enrollment.status is not Status.PAUSED:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    if pause_id is not None and pause_id != enrollment.pause_id:
        return Unchanged("the resume is for an earlier pause")
    if workflow is None:
        raise MissingWorkflowVersionError(enrollment.account_id, enrollment.enrollment_id)
    due_at = max(enrollment.next_due_at or now, now)
    resumed = replace(
        enrollment, status=Status.ACTIVE, next_due_at=due_at, paused_until=None, pause_id=None
    )
    step = workflow.definition.steps[resumed.current_step]
    return Resumed(resumed, actor, _scheduled(resumed, step, due_at))


Decision = VersionApplied | Admitted | Refused | ScheduleNext | Complete | Exited | Paused | Resumed
"""Every change a message can cause; ``messages`` and ``history`` map each to its outputs."""
