"""trigger-evaluator subscribers: keep the projection, and turn inbound events into exits.

Workflow, enrollment and messaging events maintain this service's own view of workflow
versions, enrollments and sent emails. Each inbound event is classified, its candidate
enrollments loaded, the pure domain decides, every decision is recorded, and each exit
becomes an ``enrollment.exit`` command in the outbox, committed with the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.trigger_evaluator.domain import (
    PERSONAL_EMAIL_DOMAINS,
    STATUS_AFTER_EVENT,
    Candidate,
    MatchKind,
    Outcome,
    decide,
    exit_command,
    replier_company_domains,
)
from services.trigger_evaluator.repository import PostgresRepository, TriggerRepository
from services.trigger_evaluator.triggers import EXIT_RULES, Signal, classify
from shared.consumer import Handler
from shared.contracts import TOPIC_OF_TYPE, Message
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    MessageSent,
    WorkflowApplied,
)
from shared.db import DbConnection
from shared.logging import get_logger
from shared.outbox import UnitOfWork

log = get_logger(__name__)

RepositoryFactory = Callable[[DbConnection], TriggerRepository]
"""Builds the repository on the unit of work's connection (a fake in handler tests)."""


@dataclass(frozen=True)
class TriggerHandlers:
    """The subscribers, sharing the repository port and the company-reply settings."""

    repositories: RepositoryFactory = PostgresRepository
    ignored_company_domains: frozenset[str] = PERSONAL_EMAIL_DOMAINS

    async def workflow_applied(self, uow: UnitOfWork, event: WorkflowApplied) -> None:
        applied = event.payload
        await self.repositories(uow.conn).save_workflow_version(
            event.account_id, applied.version, applied.definition
        )

    async def enrolled(self, uow: UnitOfWork, event: EnrollmentEnrolled) -> None:
        await self.repositories(uow.conn).save_enrollment(event.account_id, event.payload)

    async def lifecycle(
        self,
        uow: UnitOfWork,
        event: EnrollmentPaused | EnrollmentResumed | EnrollmentExited | EnrollmentCompleted,
    ) -> None:
        await self.repositories(uow.conn).set_status(
            event.account_id, event.payload, STATUS_AFTER_EVENT[event.type]
        )

    async def message_sent(self, uow: UnitOfWork, event: MessageSent) -> None:
        await self.repositories(uow.conn).save_sent_message(event.account_id, event.payload)

    async def inbound(self, uow: UnitOfWork, event: Message) -> None:
        repository = self.repositories(uow.conn)
        signal = classify(event)
        candidates = await self._candidates(repository, signal) if signal.may_exit else []
        decisions = decide(signal, candidates)
        await repository.save_decisions(event.account_id, event.message_id, event.type, decisions)
        topic = TOPIC_OF_TYPE[event.type]
        for decision in decisions:
            enrollment_id = decision.enrollment.enrollment_id if decision.enrollment else None
            if decision.outcome is Outcome.EXIT:
                uow.publish(exit_command(event, decision, topic=topic))
                log.info(
                    "exit_decided",
                    enrollment_id=str(enrollment_id),
                    reason=decision.reason,
                    why=decision.why,
                )
            else:
                log.debug(
                    "trigger_ignored",
                    enrollment_id=str(enrollment_id) if enrollment_id else None,
                    why=decision.why,
                )

    async def _candidates(self, repository: TriggerRepository, signal: Signal) -> list[Candidate]:
        account_id = signal.account_id
        lookup = signal.lookup
        found = [
            *(
                Candidate(view, MatchKind.THREAD)
                for view in await repository.by_sent_messages(account_id, lookup.sent_message_ids)
            ),
            *(
                Candidate(view, MatchKind.RECORD)
                for view in await repository.by_records(account_id, lookup.records)
            ),
            *(
                Candidate(view, MatchKind.ATTENDEE)
                for view in await repository.by_records(account_id, lookup.attendees)
            ),
            *(
                Candidate(view, MatchKind.ADDRESS)
                for view in await repository.by_addresses(
                    account_id, lookup.addresses, include_aliases=lookup.include_aliases
                )
            ),
        ]
        if lookup.company_of_replier:
            domains = replier_company_domains(found, ignored=self.ignored_company_domains)
            found.extend(
                Candidate(view, MatchKind.COMPANY)
                for view in await repository.live_by_company(account_id, domains)
            )
        return found

    def handlers(self) -> Mapping[str, Handler]:
        return {
            WorkflowApplied.TYPE: self.workflow_applied,
            EnrollmentEnrolled.TYPE: self.enrolled,
            EnrollmentPaused.TYPE: self.lifecycle,
            EnrollmentResumed.TYPE: self.lifecycle,
            EnrollmentExited.TYPE: self.lifecycle,
            EnrollmentCompleted.TYPE: self.lifecycle,
            MessageSent.TYPE: self.message_sent,
            **dict.fromkeys(EXIT_RULES, self.inbound),
        }


def build_handlers(
    repositories: RepositoryFactory = PostgresRepository,
    *,
    ignored_company_domains: frozenset[str] = PERSONAL_EMAIL_DOMAINS,
) -> Mapping[str, Handler]:
    """The handler of every message type trigger-evaluator consumes."""
    return TriggerHandlers(repositories, ignored_company_domains).handlers()
