"""Pure enrollment decisions: who may enter a workflow, when steps run, how it ends.

No I/O here: handlers load the state, call these functions, and save what they return.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.contracts import RecordRef, derived_message_id
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import Rejection
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
class Admitted:
    enrollment: Enrollment
    first_step: Step


@dataclass(frozen=True, slots=True)
class Refused:
    rejections: tuple[Rejection, ...]


def decide_enrollment(
    *,
    workflow: WorkflowVersion | None,
    workflow_id: str,
    record: RecordRef,
    account_id: str,
    previous: list[Enrollment],
    now: datetime,
    enrollment_id: uuid.UUID,
) -> Admitted | Refused:
    """Admit ``record`` into the workflow's current version, or say every reason why not.

    ``previous`` holds the record's earlier enrollments in this workflow, any status.
    """
    if workflow is None:
        return Refused(
            (
                Rejection(
                    code="unknown_workflow", detail=f"no workflow {workflow_id!r} in this account"
                ),
            )
        )
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
    if rejections:
        return Refused(tuple(rejections))
    first = definition.steps[0]
    return Admitted(
        enrollment=Enrollment(
            enrollment_id=enrollment_id,
            account_id=account_id,
            workflow_id=workflow.workflow_id,
            workflow_version=workflow.version,
            record=record,
            status=Status.ACTIVE,
            current_step=0,
            steps_completed=0,
            enrolled_at=now,
            next_due_at=now + timedelta(seconds=first.delay_seconds),
        ),
        first_step=first,
    )


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
class ScheduleNext:
    enrollment: Enrollment
    step: Step


@dataclass(frozen=True, slots=True)
class Complete:
    enrollment: Enrollment


@dataclass(frozen=True, slots=True)
class Unchanged:
    why: str


def on_step_sent(
    enrollment: Enrollment, definition: WorkflowDefinition, *, step_index: int, sent_at: datetime
) -> ScheduleNext | Complete | Unchanged:
    """A step went out: schedule the next one after its delay, or complete.

    A paused enrollment still records a step that was already on its way when it paused.
    """
    if not enrollment.status.live:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    if step_index != enrollment.current_step:
        return Unchanged(f"step {step_index} is not the current step {enrollment.current_step}")
    done = replace(enrollment, steps_completed=enrollment.steps_completed + 1)
    following = step_index + 1
    if following >= len(definition.steps):
        return Complete(replace(done, status=Status.COMPLETED, next_due_at=None, ended_at=sent_at))
    step = definition.steps[following]
    return ScheduleNext(
        replace(
            done,
            current_step=following,
            next_due_at=sent_at + timedelta(seconds=step.delay_seconds),
        ),
        step,
    )


@dataclass(frozen=True, slots=True)
class Exited:
    enrollment: Enrollment


def decide_exit(
    enrollment: Enrollment,
    *,
    reason: ExitReason,
    source: ExitSource,
    agents_may_stop: bool,
    by_user: bool,
    now: datetime,
) -> Exited | Unchanged:
    """End a live enrollment once; an ended one stays as it was (exit is idempotent)."""
    if not enrollment.status.live:
        return Unchanged(f"enrollment already {enrollment.status.value}")
    if source in (ExitSource.MANUAL, ExitSource.BULK) and by_user and not agents_may_stop:
        return Unchanged("the workflow does not let agents stop it")
    return Exited(
        replace(
            enrollment, status=Status.EXITED, next_due_at=None, ended_at=now, exit_reason=reason
        )
    )


def decide_pause(enrollment: Enrollment) -> Enrollment | Unchanged:
    if enrollment.status is not Status.ACTIVE:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    return replace(enrollment, status=Status.PAUSED)


def decide_resume(enrollment: Enrollment, *, now: datetime) -> Enrollment | Unchanged:
    """Resume a paused enrollment; its current step runs at once if its time has passed."""
    if enrollment.status is not Status.PAUSED:
        return Unchanged(f"enrollment is {enrollment.status.value}")
    due = enrollment.next_due_at or now
    return replace(enrollment, status=Status.ACTIVE, next_due_at=max(due, now))
