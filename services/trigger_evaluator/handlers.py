"""trigger-evaluator subscribers: keep the projection, and turn inbound events into exits.

Both subscribers take whole runs of consecutive messages (``Batched``) and cost a constant
number of statements per run. Workflow, enrollment and messaging events maintain this
service's own view of workflow versions, enrollments and sent emails. Inbound events are
classified, the candidate enrollments of the whole run loaded at once, the pure domain
decides event by event, every decision is recorded, and each exit becomes an
``enrollment.exit`` command in the outbox, committed with the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.trigger_evaluator.domain import (
    PERSONAL_EMAIL_DOMAINS,
    Candidate,
    MatchKind,
    Outcome,
    decide,
    exit_command,
    replier_company_domains,
)
from services.trigger_evaluator.projection import ENROLLMENT_EVENTS, EnrollmentEvent
from services.trigger_evaluator.repository import (
    CompanySearch,
    DecidedEvent,
    PostgresRepository,
    TriggerRepository,
)
from services.trigger_evaluator.triggers import EXIT_RULES, Signal, classify
from shared.consumer import Batched
from shared.contracts import TOPIC_OF_TYPE, Message
from shared.contracts.events import MessageSent, WorkflowApplied
from shared.db import DbConnection
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

RepositoryFactory = Callable[[DbConnection], TriggerRepository]
"""Builds the repository on the unit of work's connection (a fake in handler tests)."""


@dataclass(frozen=True)
class TriggerHandlers:
    """The subscribers, sharing the repository port and the company-reply settings."""

    repositories: RepositoryFactory = PostgresRepository
    ignored_company_domains: frozenset[str] = PERSONAL_EMAIL_DOMAINS

    async def project(self, uow: UnitOfWork[Any], events: list[Message]) -> None:
        """Apply a run of workflow, enrollment and messaging events to the projection.

        The three tables never depend on each other, so each kind is written at once,
        keeping the run's order within it.
        """
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
                raise TypeError(f"{event.type} is not a projection event (a wiring mistake)")
        repository = self.repositories(uow.conn)
        if versions:
            await repository.save_workflow_versions(versions)
        if enrollments:
            await repository.save_enrollment_events(enrollments)
        if sent:
            await repository.save_sent_messages(sent)

    async def inbound(self, uow: UnitOfWork[Any], events: list[Message]) -> None:
        """Decide a run of inbound events, each as if alone, with one load for all.

        Deciding writes nothing a later event of the run would read (exits only happen
        once enrollment applies the commands), so the run's candidates are loaded first.
        """
        repository = self.repositories(uow.conn)
        signals = [classify(event) for event in events]
        found = await self._candidates(repository, signals)
        decided: list[DecidedEvent] = [
            (signal, decide(signal, candidates))
            for signal, candidates in zip(signals, found, strict=True)
        ]
        await repository.save_decisions(decided)
        for event, (_, decisions) in zip(events, decided, strict=True):
            topic = TOPIC_OF_TYPE[event.type]
            for decision in decisions:
                enrollment_id = decision.enrollment.enrollment_id if decision.enrollment else None
                if decision.outcome is Outcome.EXIT:
                    uow.publish(exit_command(event, decision, topic=topic))
                    log.info(
                        "exit_decided",
                        inbound_message_id=str(event.message_id),
                        enrollment_id=str(enrollment_id),
                        reason=decision.reason,
                        why=decision.why,
                    )
                else:
                    log.debug(
                        "trigger_ignored",
                        inbound_message_id=str(event.message_id),
                        enrollment_id=str(enrollment_id) if enrollment_id else None,
                        why=decision.why,
                    )

    async def _candidates(
        self, repository: TriggerRepository, signals: Sequence[Signal]
    ) -> list[list[Candidate]]:
        """Each signal's candidate enrollments: its own lookups, then its replier's company.

        Signals that can never exit get none (``decide`` would not look at them).
        """
        asking = [i for i, signal in enumerate(signals) if signal.may_exit]
        found: list[list[Candidate]] = [[] for _ in signals]
        direct = await repository.candidates([signals[i] for i in asking]) if asking else []
        for i, candidates in zip(asking, direct, strict=True):
            found[i] = candidates
        searches: list[tuple[int, CompanySearch]] = []
        for i in asking:
            if signals[i].lookup.company_of_replier:
                domains = replier_company_domains(found[i], ignored=self.ignored_company_domains)
                if domains:
                    searches.append((i, (signals[i].account_id, domains)))
        if searches:
            colleagues = await repository.live_by_company([search for _, search in searches])
            for (i, _), views in zip(searches, colleagues, strict=True):
                found[i].extend(Candidate(view, MatchKind.COMPANY) for view in views)
        return found

    def handlers(self) -> Mapping[str, Batched]:
        """One ``Batched`` per subscriber, shared by its types, so mixed runs stay whole."""
        project = Batched(self.project)
        inbound = Batched(self.inbound)
        return {
            WorkflowApplied.TYPE: project,
            MessageSent.TYPE: project,
            **{event_type.TYPE: project for event_type in ENROLLMENT_EVENTS},
            **dict.fromkeys(EXIT_RULES, inbound),
        }


def build_handlers(
    repositories: RepositoryFactory = PostgresRepository,
    *,
    ignored_company_domains: frozenset[str] = PERSONAL_EMAIL_DOMAINS,
) -> Mapping[str, Batched]:
    """The handler of every message type trigger-evaluator consumes."""
    return TriggerHandlers(repositories, ignored_company_domains).handlers()
