"""What trigger-evaluator decides about: enrollments as it projects them, how an event
found them, and what it decided (or that it waits). Pure, shared by the decision modules
(``domain``, ``pauses``, ``other_workflows``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.trigger_evaluator.out_of_office import PlannedResume
from services.trigger_evaluator.triggers import Signal
from shared.contracts import SYSTEM_ACTOR, Actor, RecordRef, derived_message_id
from shared.contracts.commands import ExitReason, ExitSource, PauseReason
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
)
from shared.contracts.workflow import ExitTrigger, WorkflowSettings


class EnrollmentStatus(StrEnum):
    """What trigger-evaluator needs of an enrollment's state: live (active, paused) or ended."""

    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"

    @property
    def live(self) -> bool:
        return self is not EnrollmentStatus.ENDED


STATUS_AFTER_EVENT: dict[str, EnrollmentStatus] = {
    EnrollmentPaused.TYPE: EnrollmentStatus.PAUSED,
    EnrollmentResumed.TYPE: EnrollmentStatus.ACTIVE,
    EnrollmentExited.TYPE: EnrollmentStatus.ENDED,
    EnrollmentCompleted.TYPE: EnrollmentStatus.ENDED,
}
"""The status an enrollment lifecycle event leaves behind (ended is final)."""


DEFAULT_SETTINGS = WorkflowSettings()


@dataclass(frozen=True, slots=True)
class WorkflowTriggers:
    """The exit settings of one workflow version (``settings`` holds each trigger's rules)."""

    exit_triggers: frozenset[ExitTrigger]
    unenroll_company_on_reply: bool = False
    settings: WorkflowSettings = DEFAULT_SETTINGS


@dataclass(frozen=True, slots=True)
class EnrollmentView:
    """One enrollment as trigger-evaluator projects it, with its workflow version's settings.

    ``workflow`` is None when the version's ``workflow.applied`` has not been seen yet;
    ``enrolled_at`` is None when no ``enrollment.enrolled`` has been (or, for enrollments
    projected before it was kept, was) seen.
    """

    enrollment_id: uuid.UUID
    account_id: str
    workflow_id: str
    workflow_version: int
    record: RecordRef
    status: EnrollmentStatus
    workflow: WorkflowTriggers | None
    email: str | None = None
    aliases: tuple[str, ...] = ()
    company_domain: str | None = None
    enrolled_by_user_id: str | None = None
    enrolled_at: datetime | None = None


class MatchKind(StrEnum):
    """How a candidate enrollment was found; declared from the strongest to the weakest."""

    THREAD = "thread"  # the event quotes a message sent by this enrollment
    RECORD = "record"  # the event names the enrollment's record
    ATTENDEE = "attendee"  # the record attends the meeting
    ADDRESS = "address"  # the sender's address is the enrolled email or an alias
    COMPANY = "company"  # someone from the enrollment's company replied

    @property
    def rank(self) -> int:
        return list(MatchKind).index(self)


@dataclass(frozen=True, slots=True)
class Candidate:
    enrollment: EnrollmentView
    matched_by: MatchKind
    sent_at: datetime | None = None
    """A THREAD match: when the quoted (or clicked) email was sent."""


class Outcome(StrEnum):
    EXIT = "exit"
    PAUSE = "pause"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided for one enrollment (or, with no enrollment, for the whole event).

    An exit knows everything its command says: the triggering ``event``, the enrollment,
    the reason, the trigger, and who decided (``source``, ``decided_by``).
    """

    event: Signal
    """The inbound event decided on, as classified."""
    outcome: Outcome
    why: str
    trigger: ExitTrigger | None = None
    reason: ExitReason | PauseReason | None = None
    enrollment: EnrollmentView | None = None
    record: RecordRef | None = None
    matched_by: MatchKind | None = None
    exit_message_id: uuid.UUID | None = None
    """The id of the command this decision publishes (an exit's, or a pause's)."""
    resume: PlannedResume | None = None
    """A pause's planned resume: when, and why then."""
    source: ExitSource = ExitSource.TRIGGER
    decided_by: Actor = SYSTEM_ACTOR


WorkflowKey = tuple[str, int]
"""(workflow id, version) of one workflow version."""

DEFAULT_CLOCK_SKEW = timedelta(seconds=60)
"""How much earlier than its enrollment an event may say it occurred and still count:
upstream clocks and Offramp's disagree a little (``OFFRAMP_EVENT_CLOCK_SKEW_S``)."""

NO_ENROLLMENT_MATCHED = "no enrollment of the account matched the event"


@dataclass(frozen=True, slots=True)
class Waiting:
    """An event that may still exit an enrollment once what it waits for is projected.

    It is not decided but parked (``parking``), and evaluated again when the projection
    changes. With no ``workflow_versions`` it matched no enrollment at all: it waits for
    one (or for the sent email a reply quotes). Otherwise it matched live enrollments of
    those workflow versions, whose settings have not been projected yet.
    """

    event: Signal
    why: str
    workflow_versions: tuple[WorkflowKey, ...] = ()

    @property
    def for_an_enrollment(self) -> bool:
        return not self.workflow_versions


Verdict = list[Decision] | Waiting
"""What ``evaluate`` says of one event: its decisions, or that it waits."""


def pause_message_id(
    account_id: str, event_message_id: uuid.UUID, enrollment_id: uuid.UUID
) -> uuid.UUID:
    """The id of the pause an automatic reply causes for an enrollment (same on replay)."""
    return derived_message_id("pause", account_id, event_message_id, enrollment_id)


def exit_message_id(
    account_id: str, event_message_id: uuid.UUID, enrollment_id: uuid.UUID
) -> uuid.UUID:
    """The id of the exit an event causes for an enrollment: the same on every replay, and
    never the same for two accounts (upstream event ids are only unique within one)."""
    return derived_message_id("exit", account_id, event_message_id, enrollment_id)


def not_for_this_enrollment(
    signal: Signal, enrollment: EnrollmentView, clock_skew: timedelta
) -> str | None:
    """Why the event can never exit this enrollment, whatever its workflow says."""
    if not enrollment.status.live:
        return "the enrollment already ended"
    began = enrollment.enrolled_at
    if began is not None and signal.happened_at < began - clock_skew:
        # A late or replayed event from before the enrollment is not about it. PRODUCT: a
        # meeting logged while enrolled counts even if it took place earlier: its logging
        # time (``happened_at``) is what is compared.
        return (
            f"the event occurred at {signal.happened_at.isoformat()}, before the enrollment "
            f"began at {began.isoformat()}"
        )
    return None


def exit_decision(
    signal: Signal,
    candidate: Candidate,
    reason: ExitReason,
    why: str,
    *,
    trigger: ExitTrigger | None = None,
) -> Decision:
    enrollment = candidate.enrollment
    return Decision(
        event=signal,
        outcome=Outcome.EXIT,
        why=why,
        trigger=trigger or (signal.rule.trigger if signal.rule else None),
        reason=reason,
        enrollment=enrollment,
        record=enrollment.record,
        matched_by=candidate.matched_by,
        exit_message_id=exit_message_id(
            signal.account_id, signal.message_id, enrollment.enrollment_id
        ),
    )


def ignore_decision(signal: Signal, candidate: Candidate, why: str) -> Decision:
    return Decision(
        event=signal,
        outcome=Outcome.IGNORED,
        why=why,
        trigger=signal.rule.trigger if signal.rule else None,
        enrollment=candidate.enrollment,
        record=candidate.enrollment.record,
        matched_by=candidate.matched_by,
    )


def event_decision(signal: Signal, why: str) -> Decision:
    return Decision(
        event=signal,
        outcome=Outcome.IGNORED,
        why=why,
        trigger=signal.rule.trigger if signal.rule else None,
        record=signal.record,
    )
