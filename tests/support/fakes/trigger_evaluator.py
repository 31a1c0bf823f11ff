"""``TriggerEvaluatorStore`` in memory, with the SQL's semantics; passes tests/contract.

Runs are applied one message at a time: the plain sequential behaviour the PostgreSQL
store's batch statements must reproduce.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.trigger_evaluator.domain import (
    STATUS_AFTER_EVENT,
    Candidate,
    CompanySearch,
    Decision,
    EnrollmentStatus,
    EnrollmentView,
    MatchKind,
    WorkflowTriggers,
    company_domain_key,
)
from services.trigger_evaluator.parking import ParkedEvent, in_parking_order
from services.trigger_evaluator.projection import EnrollmentEvent
from services.trigger_evaluator.record_fields import RecordKey, Snapshot
from services.trigger_evaluator.record_links import RecordDataEvent, fold_record_data
from services.trigger_evaluator.triggers import Lookup, Signal, normalize_message_id
from shared.contracts import ActorKind, RecordRef, RecordType
from shared.contracts.commands import ContactDetails
from shared.contracts.events import (
    EnrolledPayload,
    EnrollmentEnrolled,
    EnrollmentRef,
    MessageSent,
    WorkflowApplied,
)

DecisionKey = tuple[str, uuid.UUID, uuid.UUID | None]
"""(account, inbound message id, enrollment id or None): a decision is recorded once."""


@dataclass
class FakeTriggerEvaluatorStore:
    workflows: dict[tuple[str, str, int], WorkflowTriggers] = field(default_factory=dict)
    enrollments: dict[tuple[str, uuid.UUID], EnrollmentView] = field(default_factory=dict)
    """(account, enrollment id) -> view: another account's same id is another enrollment."""
    sent: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    sent_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    links: set[tuple[str, RecordRef, RecordRef]] = field(default_factory=set)
    fields: dict[RecordKey, Snapshot] = field(default_factory=dict)
    """The last snapshot of each CRM record's fields."""
    """CRM associations, one (account, record, associated) per direction."""
    decided: dict[DecisionKey, Decision] = field(default_factory=dict)
    """Every decision recorded, in the order recorded."""
    parked: dict[tuple[str, str], ParkedEvent] = field(default_factory=dict)
    """(account, inbound message id) -> the event waiting, as stored."""
    calls: list[str] = field(default_factory=list)
    """Method names in call order: one call stands for one SQL statement."""

    def snapshot(self) -> object:
        return (
            dict(self.workflows),
            dict(self.enrollments),
            dict(self.sent),
            dict(self.decided),
            dict(self.parked),
            set(self.links),
            {k: dict(v) for k, v in self.fields.items()},
        )

    @property
    def decisions(self) -> list[tuple[str, uuid.UUID, str, Decision]]:
        """(account, inbound message id, inbound type, decision), in the order recorded."""
        return [
            (d.event.account_id, d.event.message_id, d.event.event_type, d)
            for d in self.decided.values()
        ]

    async def save_workflow_versions(self, applied: Sequence[WorkflowApplied]) -> None:
        self.calls.append("save_workflow_versions")
        for event in applied:
            definition = event.payload.definition
            settings = definition.settings
            self.workflows.setdefault(
                (event.account_id, definition.workflow_id, event.payload.version),
                WorkflowTriggers(
                    settings.exit_triggers, settings.unenroll_company_on_reply, settings
                ),
            )

    async def save_enrollment_events(self, events: Sequence[EnrollmentEvent]) -> None:
        self.calls.append("save_enrollment_events")
        for event in events:
            if isinstance(event, EnrollmentEnrolled):
                self._enrolled(event.account_id, event.payload, event.occurred_at)
            else:
                self._set_status(event.account_id, event.payload, STATUS_AFTER_EVENT[event.type])

    def _enrolled(self, account_id: str, enrolled: EnrolledPayload, at: datetime) -> None:
        contact = enrolled.contact or ContactDetails()
        key = (account_id, enrolled.enrollment_id)
        known = self.enrollments.get(key)
        began = at if known is None or known.enrolled_at is None else min(at, known.enrolled_at)
        self.enrollments[key] = EnrollmentView(
            enrollment_id=enrolled.enrollment_id,
            account_id=account_id,
            workflow_id=known.workflow_id if known else enrolled.workflow_id,
            workflow_version=known.workflow_version if known else enrolled.workflow_version,
            record=known.record if known else enrolled.record,
            status=known.status if known else EnrollmentStatus.ACTIVE,
            workflow=None,
            email=contact.email,
            aliases=contact.aliases,
            company_domain=company_domain_key(contact.company_domain),
            enrolled_by_user_id=enrolled.actor.id
            if enrolled.actor.kind is ActorKind.USER
            else None,
            enrolled_at=began,
        )

    def _set_status(self, account_id: str, ref: EnrollmentRef, status: EnrollmentStatus) -> None:
        key = (account_id, ref.enrollment_id)
        known = self.enrollments.get(key)
        if known is None:  # a lifecycle event ahead of enrolled: remembered all the same
            self.enrollments[key] = EnrollmentView(
                enrollment_id=ref.enrollment_id,
                account_id=account_id,
                workflow_id=ref.workflow_id,
                workflow_version=ref.workflow_version,
                record=ref.record,
                status=status,
                workflow=None,
            )
        elif known.status is not EnrollmentStatus.ENDED:
            self.enrollments[key] = replace(known, status=status)

    async def save_sent_messages(self, sent: Sequence[MessageSent]) -> None:
        self.calls.append("save_sent_messages")
        for event in sent:
            message_id = normalize_message_id(event.payload.provider_message_id)
            if message_id is not None:  # otherwise nothing a reply could quote
                key = (event.account_id, message_id)
                self.sent.setdefault(key, event.payload.enrollment_id)
                self.sent_at.setdefault(key, event.payload.sent_at)

    def _views(
        self, account_id: str, keep: Callable[[EnrollmentView], bool]
    ) -> list[EnrollmentView]:
        return [
            replace(
                e, workflow=self.workflows.get((e.account_id, e.workflow_id, e.workflow_version))
            )
            for e in self.enrollments.values()
            if e.account_id == account_id and keep(e)
        ]

    async def candidates(self, signals: Sequence[Signal]) -> list[list[Candidate]]:
        self.calls.append("candidates")
        return [self._candidates(signal.account_id, signal.lookup) for signal in signals]

    def _candidates(self, account_id: str, lookup: Lookup) -> list[Candidate]:
        threads: dict[uuid.UUID | None, datetime | None] = {}
        for m in lookup.sent_message_ids:  # the first quoted email of an enrollment
            threads.setdefault(self.sent.get((account_id, m)), self.sent_at.get((account_id, m)))
        addresses = set(lookup.addresses)

        def by_address(e: EnrollmentView) -> bool:
            aliases = set(e.aliases) if lookup.include_aliases else set()
            return bool({e.email, *aliases} & addresses)

        searches: list[tuple[MatchKind, Callable[[EnrollmentView], bool]]] = [
            (MatchKind.THREAD, lambda e: e.enrollment_id in threads),
            (MatchKind.RECORD, lambda e: e.record in lookup.records),
            (MatchKind.ATTENDEE, lambda e: e.record in lookup.attendees),
            (MatchKind.ADDRESS, by_address),
        ]
        found = [
            Candidate(
                view, kind, threads.get(view.enrollment_id) if kind is MatchKind.THREAD else None
            )
            for kind, keep in searches
            for view in self._views(account_id, keep)
        ]
        # Strongest first, then a stable order for replays (the SQL's ORDER).
        return sorted(found, key=lambda c: (c.matched_by.rank, c.enrollment.enrollment_id))

    async def live_by_company(
        self, searches: Sequence[CompanySearch]
    ) -> list[list[EnrollmentView]]:
        self.calls.append("live_by_company")
        return [self._colleagues(search) for search in searches]

    def _linked(self, account_id: str, record: RecordRef, kind: RecordType) -> set[RecordRef]:
        return {
            b for acc, a, b in self.links if acc == account_id and a == record and b.type is kind
        }

    def _colleagues(self, search: CompanySearch) -> list[EnrollmentView]:
        account_id = search.account_id
        orgs = {a for a in search.anchors if a.type is RecordType.ORGANIZATION}
        for anchor in search.anchors:
            orgs |= self._linked(account_id, anchor, RecordType.ORGANIZATION)
        members = {a for a in search.anchors if a.type is RecordType.CONTACT}
        for org in orgs:
            members |= self._linked(account_id, org, RecordType.CONTACT)
        if orgs or members:
            by_org = self._views(account_id, lambda e: e.record in members and e.status.live)
        else:
            by_org = []
        by_domain = (
            []
            if orgs
            else self._views(
                account_id, lambda e: e.company_domain in search.domains and e.status.live
            )
        )
        views = {v.enrollment_id: v for v in (*by_org, *by_domain)}
        return sorted(views.values(), key=lambda view: view.enrollment_id)

    async def save_record_links(self, events: Sequence[RecordDataEvent]) -> None:
        self.calls.append("save_record_links")
        change = fold_record_data(events)
        for account_id, record in change.reset:
            self.links = {
                link
                for link in self.links
                if not (link[0] == account_id and record in (link[1], link[2]))
            }
        self.links -= set(change.absent)
        self.links |= set(change.present)

    async def swap_record_fields(
        self, last: Mapping[RecordKey, Snapshot | None]
    ) -> dict[RecordKey, Snapshot]:
        self.calls.append("swap_record_fields")
        before = {key: dict(self.fields[key]) for key in last if key in self.fields}
        for key, snapshot in last.items():
            if snapshot is None:
                self.fields.pop(key, None)
            else:
                self.fields[key] = dict(snapshot)
        return before

    async def save_decisions(self, decisions: Sequence[Decision]) -> None:
        self.calls.append("save_decisions")
        for d in decisions:
            enrollment_id = d.enrollment.enrollment_id if d.enrollment else None
            self.decided.setdefault((d.event.account_id, d.event.message_id, enrollment_id), d)

    async def park(self, parked: Sequence[ParkedEvent]) -> set[tuple[str, str]]:
        self.calls.append("park")
        kept: set[tuple[str, str]] = set()
        for p in parked:
            known = self.parked.get(p.key)
            if not self._may_park(p):
                continue
            stored = replace(p, only_if_a_workflow_exits_on=None, or_exits_on=())
            if known is not None:  # parked again: when it was parked and expires stay
                stored = replace(
                    stored,
                    parked_at=known.parked_at,
                    expires_at=known.expires_at,
                )
            self.parked[p.key] = stored
            kept.add(p.key)
        return kept

    def _may_park(self, parked: ParkedEvent) -> bool:
        trigger = parked.only_if_a_workflow_exits_on
        triggers = {trigger, *parked.or_exits_on}
        versions = [w for (a, _, _), w in self.workflows.items() if a == parked.account_id]
        return trigger is None or not versions or any(triggers & w.exit_triggers for w in versions)

    async def parked_for(self, keys: Sequence[str]) -> list[ParkedEvent]:
        self.calls.append("parked_for")
        wanted = set(keys)
        return in_parking_order(p for p in self.parked.values() if wanted & set(p.keys))

    async def parked_due(self, now: datetime, limit: int) -> list[ParkedEvent]:
        self.calls.append("parked_due")
        due = sorted(
            (p for p in self.parked.values() if p.check_at <= now),
            key=lambda p: (p.check_at, *p.key),
        )
        return in_parking_order(due[:limit])

    async def unpark(self, parked: Sequence[ParkedEvent]) -> None:
        self.calls.append("unpark")
        for p in parked:
            self.parked.pop(p.key, None)
