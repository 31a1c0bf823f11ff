"""trigger-evaluator subscribers: keep the projection, and turn inbound events into exits.

Both take whole runs of consecutive messages and cost a constant number of statements per
run. Workflow, enrollment and messaging events maintain this service's own view of
workflow versions, enrollments and sent emails. Inbound events are classified, the
candidate enrollments of the whole run loaded at once, the pure domain decides event by
event, every decision is recorded, and each exit is published as an ``enrollment.exit``
command, committed with the rest.

An inbound event that matched no enrollment, or one whose workflow version is not
projected yet, is parked instead (``parking``); a projection run that brings what it
waited for evaluates it again in the same transaction, and the parking loop
(``parking_loop``) evaluates it once more shortly after and releases it when it expires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.trigger_evaluator import domain, messages, parking, record_fields
from services.trigger_evaluator.config import TriggerEvaluatorSettings
from services.trigger_evaluator.domain import (
    DEFAULT_CLOCK_SKEW,
    PERSONAL_EMAIL_DOMAINS,
    Candidate,
    Decision,
    MatchKind,
    Verdict,
    Waiting,
)
from services.trigger_evaluator.errors import NotAProjectionEventError
from services.trigger_evaluator.parking import DEFAULT_PARK_MAX, ParkedEvent
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.projection import ENROLLMENT_EVENTS, EnrollmentEvent
from services.trigger_evaluator.record_links import RECORD_DATA_EVENTS, RecordDataEvent
from services.trigger_evaluator.triggers import (
    BY_OTHER_WORKFLOW_RULES,
    EXIT_RULES,
    Signal,
    classify,
    field_changes_signal,
)
from shared.consumer import Handler
from shared.contracts import TOPIC_OF_TYPE, Message
from shared.contracts.events import MessageSent, WorkflowApplied
from shared.contracts.inbound import RecordDeleted, RecordUpserted
from shared.contracts.topics import physical
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

CONSUMER = "offramp-trigger-evaluator"
"""The consumer group, named in the dead letters of released events."""


@dataclass(frozen=True)
class TriggerHandlers:
    """The two subscribers (and the parking loop's round), sharing the settings."""

    ignored_company_domains: frozenset[str] = PERSONAL_EMAIL_DOMAINS
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    park_max: timedelta = DEFAULT_PARK_MAX
    topic_namespace: str = ""

    @classmethod
    def of(cls, settings: TriggerEvaluatorSettings) -> TriggerHandlers:
        return cls(
            ignored_company_domains=frozenset(
                d.strip().lower()
                for d in settings.company_reply_ignored_domains
                | settings.company_reply_extra_ignored_domains
            ),
            clock_skew=timedelta(seconds=settings.event_clock_skew_s),
            park_max=timedelta(seconds=settings.park_max_s),
            topic_namespace=settings.topic_namespace,
        )

    async def project(
        self, uow: UnitOfWork[TriggerEvaluatorStore], events: list[Message], now: datetime
    ) -> None:
        """Apply a run of workflow, enrollment, messaging and CRM record-data events to the
        projection.

        The four tables never depend on each other, so each kind is written at once,
        keeping the run's order within it: at most 4 statements per run. Entries and exits
        look up the record's other enrollments (one statement), then the parked events
        the run may unblock are evaluated again (one probe; more statements only when it
        finds some), against the projection as the whole run leaves it.
        """
        run = _ProjectionRun.of(events)
        if run.versions:
            await uow.store.save_workflow_versions(run.versions)
        if run.enrollments:
            await uow.store.save_enrollment_events(run.enrollments)
        if run.sent:
            await uow.store.save_sent_messages(run.sent)
        if run.record_data:
            await uow.store.save_record_links(run.record_data)
            await self._field_changes(uow, run.record_data, now)
        entering = [e for e in run.enrollments if e.type in BY_OTHER_WORKFLOW_RULES]
        if entering:
            # A workflow may name others the record must leave when it enters (or leaves)
            # this one: decided like an inbound event, against the projection just saved.
            await self._decide(uow, entering, now)
        keys = parking.keys_brought_by(events)
        if keys:
            unblocked = await uow.store.parked_for(keys)
            if unblocked:
                await self._evaluate_parked(uow, unblocked, now, release=False)

    async def _field_changes(
        self, uow: UnitOfWork[TriggerEvaluatorStore], events: Sequence[Message], now: datetime
    ) -> None:
        """CRM snapshots that set, update or clear fields fire "field set or updated" on
        their record's enrollments: compared with the snapshot stored before (one
        statement; the lookup and the decisions only when a field changed)."""
        snapshots = [e for e in events if isinstance(e, RecordUpserted | RecordDeleted)]
        if not snapshots:
            return
        stored = await uow.store.swap_record_fields(record_fields.last_snapshots(snapshots))
        signals = [
            field_changes_signal(c.event, c.changes)
            for c in record_fields.fold_fields(snapshots, stored)
            if c.changes
        ]
        if not signals:
            return
        decisions: list[Decision] = []
        for verdict in await self._evaluate(uow.store, signals):
            if isinstance(verdict, Waiting):
                # Not parked: the changes were read against the projection, which has
                # moved on by the time the event could be evaluated again. A record that
                # is in no workflow (most) says nothing.
                if verdict.workflow_versions:
                    log.warning(
                        "field_change_not_decided",
                        inbound_message_id=str(verdict.event.message_id),
                        why=verdict.why,
                    )
            else:
                decisions += verdict
        if decisions:
            await uow.store.save_decisions(decisions)
            self._publish(uow, decisions, now)

    async def inbound(
        self, uow: UnitOfWork[TriggerEvaluatorStore], events: list[Message], now: datetime
    ) -> None:
        """Decide a run of inbound events, each as if alone, with one load for all.

        Deciding writes nothing a later event of the run would read (exits only happen
        once enrollment applies the commands), so the run's candidates are loaded first:
        at most 4 statements per run (candidates, colleagues of repliers, parking of the
        events that wait, decisions).
        """
        await self._decide(uow, events, now)

    async def _decide(
        self, uow: UnitOfWork[TriggerEvaluatorStore], events: Sequence[Message], now: datetime
    ) -> None:
        verdicts = await self._evaluate(uow.store, [classify(event) for event in events])
        waiting = [
            parking.park(verdict, event, now=now, max_wait=self.park_max)
            for event, verdict in zip(events, verdicts, strict=True)
            if isinstance(verdict, Waiting)
        ]
        parked = await uow.store.park(waiting) if waiting else set()
        decisions: list[Decision] = []
        for verdict in verdicts:
            if not isinstance(verdict, Waiting):
                decisions += verdict
            elif (verdict.event.account_id, str(verdict.event.message_id)) not in parked:
                # No workflow of the account exits on it: no enrollment to come could.
                decisions.append(domain.unmatched(verdict))
            else:
                log.info(
                    "inbound_parked",
                    inbound_message_id=str(verdict.event.message_id),
                    why=verdict.why,
                )
        if decisions:
            await uow.store.save_decisions(decisions)
            self._publish(uow, decisions, now)

    async def check_parked(
        self, uow: UnitOfWork[TriggerEvaluatorStore], now: datetime, limit: int
    ) -> tuple[int, list[ParkedEvent]]:
        """The parking loop's round: evaluate the parked events due for a check again and
        release those that expired; returns how many were due, and the released ones."""
        due = await uow.store.parked_due(now, limit)
        if not due:
            return 0, []
        return len(due), await self._evaluate_parked(uow, due, now, release=True)

    async def _evaluate_parked(
        self,
        uow: UnitOfWork[TriggerEvaluatorStore],
        parked: Sequence[ParkedEvent],
        now: datetime,
        *,
        release: bool,
    ) -> list[ParkedEvent]:
        """Decide what no longer waits; with ``release``, dead-letter what expired; keep
        the rest parked (for what it waits for now). Returns the released events."""
        verdicts = await self._evaluate(uow.store, [classify(p.event) for p in parked])
        decisions: list[Decision] = []
        done: list[ParkedEvent] = []
        again: list[ParkedEvent] = []
        released: list[ParkedEvent] = []
        for waited, verdict in zip(parked, verdicts, strict=True):
            if not isinstance(verdict, Waiting):
                decisions += verdict
                done.append(waited)
            elif release and waited.expires_at <= now:
                why = parking.released_why(waited, verdict)
                decisions.append(domain.unmatched(verdict, why))
                done.append(waited)
                released.append(waited)
                topic = physical(TOPIC_OF_TYPE[waited.event.type], self.topic_namespace)
                uow.publish(
                    messages.released(
                        waited, why=why, consumer=CONSUMER, source_topic=topic, now=now
                    )
                )
                log.warning(
                    "parked_event_released",
                    inbound_message_id=str(waited.event.message_id),
                    why=why,
                )
            elif (kept := waited.still(verdict, now=now)) != waited:
                again.append(kept)
        if again:
            await uow.store.park(again)
        if done:
            await uow.store.unpark(done)
        if decisions:
            await uow.store.save_decisions(decisions)
            self._publish(uow, decisions, now)
        return released

    async def _evaluate(
        self, store: TriggerEvaluatorStore, signals: Sequence[Signal]
    ) -> list[Verdict]:
        found = await self._candidates(store, signals)
        return [
            domain.evaluate(signal, candidates, clock_skew=self.clock_skew)
            for signal, candidates in zip(signals, found, strict=True)
        ]

    def _publish(
        self, uow: UnitOfWork[TriggerEvaluatorStore], decisions: Sequence[Decision], now: datetime
    ) -> None:
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
            elif decision.outcome is domain.Outcome.PAUSE:
                uow.publish(messages.pause_command(decision, now=now))
                log.info(
                    "pause_decided",
                    inbound_message_id=str(decision.event.message_id),
                    enrollment_id=str(enrollment_id),
                    resume_at=decision.resume.at.isoformat() if decision.resume else None,
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

        Signals that can neither exit nor pause get none (``decide`` would not look).
        """
        asking = [i for i, signal in enumerate(signals) if signal.looks_for_enrollments]
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
            **{event_type.TYPE: project for event_type in RECORD_DATA_EVENTS},
            **dict.fromkeys(EXIT_RULES, inbound),
        }


@dataclass
class _ProjectionRun:
    """A run of projection events sorted by the table they go to, in order within each."""

    versions: list[WorkflowApplied] = field(default_factory=list)
    enrollments: list[EnrollmentEvent] = field(default_factory=list)
    sent: list[MessageSent] = field(default_factory=list)
    record_data: list[RecordDataEvent] = field(default_factory=list)

    @classmethod
    def of(cls, events: Sequence[Message]) -> _ProjectionRun:
        run = cls()
        for event in events:
            if isinstance(event, WorkflowApplied):
                run.versions.append(event)
            elif isinstance(event, ENROLLMENT_EVENTS):
                run.enrollments.append(event)
            elif isinstance(event, MessageSent):
                run.sent.append(event)
            elif isinstance(event, RECORD_DATA_EVENTS):
                run.record_data.append(event)
            else:
                raise NotAProjectionEventError(
                    f"{event.type} is not a projection event (a wiring mistake)"
                )
        return run


def build_handlers(settings: TriggerEvaluatorSettings) -> Mapping[str, Handler]:
    """The handler of every message type trigger-evaluator consumes."""
    return TriggerHandlers.of(settings).handlers()
