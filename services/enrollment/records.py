"""The record projection, decided purely: what a CRM event does to what Offramp knows.

Events apply in order per record (they share its Kafka key). ``Projection`` holds the
records a run touches, loaded once; each event changes it in memory, and the handler
saves the final states. An association has no direction: both sides change together.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from services.enrollment.exclusions import RecordData
from shared.contracts import Message, RecordRef
from shared.contracts.inbound import (
    AssociationChange,
    AssociationChanged,
    DealStageChanged,
    FieldValue,
    RecordDeleted,
    RecordFieldChanged,
    RecordUpserted,
)
from shared.domains import normalize_domain

CrmRecordEvent = (
    RecordUpserted | RecordDeleted | AssociationChanged | DealStageChanged | RecordFieldChanged
)

DEAL_STAGE_FIELDS = ("stage", "deal_status", "pipeline")
"""The fields ``deal.stage_changed`` sets on its deal (rules read them like any field)."""


def normalized_domains(domains: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(d for d in map(normalize_domain, domains) if d))


def records_named(event: CrmRecordEvent) -> list[RecordRef]:
    """The records an event changes (both sides of an association, an upsert's links)."""
    payload = event.payload
    if isinstance(event, AssociationChanged):
        return [payload.record, event.payload.associated]
    if isinstance(event, RecordUpserted):
        return [payload.record, *event.payload.associations]
    return [payload.record]


@dataclass
class Projection:
    """The records of one run, as loaded, changed event by event."""

    account_id: str
    records: dict[RecordRef, RecordData]
    changed: dict[RecordRef, None] = field(default_factory=dict)
    """Records whose data or links changed, in order."""
    deleted: dict[RecordRef, None] = field(default_factory=dict)

    def _get(self, ref: RecordRef) -> RecordData:
        """What is known of ``ref``; a record never heard of is a link-only stub."""
        return self.records.get(ref) or RecordData(ref, known=False)

    def _put(self, data: RecordData) -> None:
        self.records[data.record] = data
        if data.known:
            self.deleted.pop(data.record, None)
        self.changed[data.record] = None

    def _link(self, a: RecordRef, b: RecordRef, *, added: bool) -> None:
        for one, other in ((a, b), (b, a)):
            data = self._get(one)
            links = data.associations | {other} if added else data.associations - {other}
            self._put(replace(data, associations=frozenset(links)))

    def apply(self, event: CrmRecordEvent) -> None:
        match event:
            case RecordUpserted(payload=p):
                before = self._get(p.record)
                for gone in before.associations - set(p.associations):
                    self._link(p.record, gone, added=False)
                self._put(
                    RecordData(
                        p.record,
                        fields=dict(p.fields),
                        email=p.email,
                        aliases=p.aliases,
                        company_name=p.company_name,
                        domains=normalized_domains(p.domains),
                        associations=frozenset(p.associations) - {p.record},
                    )
                )
                for other in p.associations:
                    if other != p.record:
                        self._link(p.record, other, added=True)
            case RecordDeleted(payload=p):
                for other in self._get(p.record).associations:
                    self._link(p.record, other, added=False)
                self.records.pop(p.record, None)
                self.changed.pop(p.record, None)
                self.deleted[p.record] = None
            case AssociationChanged(payload=p):
                self._link(p.record, p.associated, added=p.change is AssociationChange.ADDED)
            case DealStageChanged(payload=p):
                data = self._get(p.record)
                stage = {"stage": p.stage, "deal_status": p.status.value, "pipeline": p.pipeline}
                self._put(replace(data, fields={**data.fields, **stage}, known=True))
            case RecordFieldChanged(payload=p):
                # A change for a record not known yet creates it.
                data = self._get(p.record)
                fields = {**data.fields, p.field: _field_value(p.new_value)}
                self._put(replace(data, fields=fields, known=True))

    def saved(self) -> list[RecordData]:
        """The final state of every changed record (link-only stubs included)."""
        return [self.records[r] for r in self.changed if r in self.records]


def _field_value(value: object) -> FieldValue:
    """``record.field_changed`` carries any JSON: a list becomes a multi-select tuple."""
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str | int | float | bool))
    if isinstance(value, str | int | float | bool):
        return value
    return None  # an object: not a value rules can read


def is_record_event(message: Message) -> bool:
    return isinstance(
        message,
        RecordUpserted | RecordDeleted | AssociationChanged | DealStageChanged | RecordFieldChanged,
    )
