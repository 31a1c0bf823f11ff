"""trigger-evaluator subscribers: keep the projection, and turn inbound events into exits.

Both take whole runs of consecutive messages and cost a constant number of statements per
run. Workflow, enrollment and messaging events maintain this service's own view of
workflow versions, enrollments and sent emails. Inbound events are classified, the
candidate enrollments of the whole run loaded at once, the pure domain decides event by
event, every decision is recorded, and each exit is published as an ``enrollment.exit``
command, committed with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.trigger_evaluator import domain, messages
from services.trigger_evaluator.config import TriggerEvaluatorSettings
from services.trigger_evaluator.domain import PERSONAL_EMAIL_DOMAINS, Candidate, MatchKind
from services.trigger_evaluator.errors import NotAProjectionEventError
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.projection import ENROLLMENT_EVENTS, EnrollmentEvent
from services.trigger_evaluator.triggers import EXIT_RULES, Signal, classify
from shared.consumer import Handler
from shared.contracts import Message
from shared.contracts.events import MessageSent, WorkflowApplied
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)


@dataclass(frozen=True)
class TriggerHandlers:
    """The two subscribers, sharing the company-reply setting."""

    ignored_company_domains: frozenset[str] = PERSONAL_EMAIL_DOMAINS

    async def project(
        self, uow: UnitOfWork[TriggerEvaluatorStore], events: list[Message], now: datetime
    ) -> None:
        """Apply a run of workflow, enrollment and messaging events to the projection.

        The three tables never depend on each other, so each kind is written at once,
        keeping the run's order within it: at most 3 statements per run.
        """
        del now  # the projection keeps the events' own facts
        versions: list[WorkflowApplied] = []
        enrollments: list[EnrollmentEvent] = []
        sent: list[MessageSent] = []
        for event in events:
            if isinstance(event, WorkflowApplied):
                versions.append(event)
            elif isinstance(event, ENROLLMENT_EVENTS):
                enrollments.append(event)
            elif isinstance(event, MessageSent):
                sent.append(event)
            else:
                raise NotAProjectionEventError(
                    f"{event.type} is not a projection event (a wiring mistake)"
                )
        if versions:
            await uow.store.save_workflow_versions(versions)
        if enrollments:
            await uow.store.save_enrollment_events(enrollments)
        if sent:
            await uow.store.save_sent_messages(sent)

    async def inbound(
        self, uow: UnitOfWork[TriggerEvaluatorStore], events: list[Message], now: datetime
    ) -> None:
        """Decide a run of inbound events, each as if alone, with one load for all.

        Deciding writes nothing a later event of the run would read (exits only happen
        once enrollment applies the commands), so the run's candidates are loaded first:
        3 statements per run (candidates, colleagues of repliers, decisions).
        """
        signals = [classify(event) for event in events]
        found = await self._candidates(uow.store, signals)
        decisions = [
            decision
            for signal, candidates in zip(signals, found, strict=True)
            for decision in domain.decide(signal, candidates)
        ]
        await uow.store.save_decisions(decisions)
        for decision in decisions:
            enrollment_id = decision.enrollment.enrollment_id if decision.enrollment else None
            if decision.outcome is domain.Outcome.EXIT:
                uow.publish(messages.exit_command(decision, now=now))
                log.info(
                    "exit_decided",
                    inbound_message_id=str(decision.event.message_id),
                    enrollment_id=str(enrollment_id),
                    reason=decision.reason,
                    why=decision.why,
                )
            else:
                log.debug(
                    "trigger_ignored",
                    inbound_message_id=str(decision.event.message_id),
                    enrollment_id=str(enrollment_id) if enrollment_id else None,
                    why=decision.why,
                )

    async def _candidates(
        self, store: TriggerEvaluatorStore, signals: Sequence[Signal]
    ) -> list[list[Candidate]]:
        """Each signal's candidate enrollments: its own lookups, then its replier's company.

        Signals that can never exit get none (``decide`` would not look at them).
        """
        asking = [i for i, signal in enumerate(signals) if signal.may_exit]
        found: list[list[Candidate]] = [[] for _ in signals]
        direct = await store.candidates([signals[i] for i in asking]) if asking else []
        for i, candidates in zip(asking, direct, strict=True):
            found[i] = candidates
        searches = domain.company_searches(signals, found, ignored=self.ignored_company_domains)
        if searches:
            colleagues = await store.live_by_company([search for _, search in searches])
            for (i, _), views in zip(searches, colleagues, strict=True):
                found[i].extend(Candidate(view, MatchKind.COMPANY) for view in views)
        return found

    def handlers(self) -> Mapping[str, Handler]:
        """One handler per subscriber, shared by its types, so mixed runs stay whole."""
        project: Handler = self.project
        inbound: Handler = self.inbound
        return {
            WorkflowApplied.TYPE: project,
            MessageSent.TYPE: project,
            **{event_type.TYPE: project for event_type in ENROLLMENT_EVENTS},
            **dict.fromkeys(EXIT_RULES, inbound),
        }


def build_handlers(settings: TriggerEvaluatorSettings) -> Mapping[str, Handler]:
    """The handler of every message type trigger-evaluator consumes."""
    return TriggerHandlers(settings.company_reply_ignored_domains).handlers()
