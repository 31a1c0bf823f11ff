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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from services.enrollment import reenrollment, send_windows
from shared.contracts import Actor, RecordRef, derived_message_id
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource, TriggeringEvent
from shared.contracts.events import ExclusionHit, Rejection
from shared.contracts.workflow import Step, WorkflowDefinition


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
class Dispatch:
    """The step an enrollment granted messaging to send, until when a call may start."""

    dispatch_id: uuid.UUID
    step_index: int
    step_id: str
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class PendingExit:
    """An exit decided while a step's dispatch was granted: it commits once messaging
    reports that send's outcome, or once the grant's lease has lapsed."""

    reason: ExitReason
    source: ExitSource
    actor: Actor
    triggering_event: TriggeringEvent | None
    decided_at: datetime
    exclusion: ExclusionHit | None = None
    """The exclusion rule (and version) the exit is for, when that is why."""


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
    dispatch: Dispatch | None = None
    """The step granted to messaging and not yet reported sent, failed or cancelled."""
    pending_exit: PendingExit | None = None
    """An exit waiting for the outcome of ``dispatch``: the enrollment is exiting."""
    time_zone: str | None = None
    """The record's IANA time zone, from the enroll command (None: the workflow's default);
    the workflow's send window is kept in it."""

    @property
    def exiting(self) -> bool:
        return self.pending_exit is not None


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


LATER_SETTINGS = frozenset(
    {
        "send_window",
        "out_of_office",
        "page_rules",
        "field_rules",
        "link_clicks",
        "conversations",
        "deal_stages",
        "exits_workflows_on_enroll",
        "exits_workflows_on_exit",
        "exit_company_on_deal_opened",
        "daily_enrollment_cap",
    }
)
"""Workflow settings added after the first contract: left out of the hash while at their
default, so a definition applied before they existed keeps its hash (re-applying it
creates no version). A setting added later belongs here."""


def definition_hash(definition: WorkflowDefinition) -> str:
    settings = definition.settings
    defaults = type(settings).model_fields
    unset = {
        name
        for name in LATER_SETTINGS
        if getattr(settings, name) == defaults[name].get_default(call_default_factory=True)
    }
    dumped = definition.model_dump_json(exclude={"settings": unset} if unset else None)
    return hashlib.sha256(dumped.encode()).hexdigest()


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
    """Nothing changed: ``why`` in words, ``code`` the stable reason a command's requester
    reads in its answer (``command.refused``)."""

    why: str
    code: str = field(default="unchanged", compare=False)
    """Not compared: two refusals with the same words are the same refusal."""


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
    """The step an enrollment runs next, and when: ``due_at`` is the planned time (in the
    workflow's send window), ``unplanned_at`` when it fell due, if the window moved it."""

    index: int
    step: Step
    due_at: datetime
    unplanned_at: datetime | None = None


def scheduled_step(
    enrollment: Enrollment, step: Step, due_at: datetime, *, unplanned_at: datetime | None = None
) -> ScheduledStep:
    moved = unplanned_at if unplanned_at is not None and unplanned_at != due_at else None
    return ScheduledStep(enrollment.current_step, step, due_at, moved)


def planned_at(definition: WorkflowDefinition, time_zone: str | None, due_at: datetime) -> datetime:
    """When a step falling due at ``due_at`` is planned: the next opening of the workflow's
    send window in the record's time zone (``due_at`` itself without a window)."""
    return send_windows.planned(definition.settings.send_window, time_zone, due_at)


@dataclass(frozen=True, slots=True)
class Admitted:
    enrollment: Enrollment
    scheduled: ScheduledStep
    contact: ContactDetails | None
    actor: Actor
    restarts: Enrollment | None = None
    """The record's live enrollment this one replaces (an ``anytime`` workflow's): it
    exits, reason ``reenrolled``, before this one starts."""

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
    ``excluded`` the exclusion rules that reject it (``screening.screen_enrolls``).
    """
    rejections = [*_rejections(workflow, workflow_id, record, previous, now), *excluded]
    if rejections or workflow is None:
        return Refused(tuple(rejections), account_id, workflow_id, record, actor)
    first = workflow.definition.steps[0]
    time_zone = contact.time_zone if contact else None
    unplanned = now + timedelta(seconds=first.delay_seconds)
    due_at = planned_at(workflow.definition, time_zone, unplanned)
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
        time_zone=time_zone,
    )
    scheduled = scheduled_step(enrollment, first, due_at, unplanned_at=unplanned)
    restarts = reenrollment.restarted(workflow.definition.settings, previous)
    return Admitted(enrollment, scheduled, contact, actor, restarts)


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
    rejections.extend(reenrollment.rejections(definition.settings, previous, now))
    return rejections
