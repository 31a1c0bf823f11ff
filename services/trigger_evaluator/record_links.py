"""Pure folding of CRM record data into trigger-evaluator's own association projection.

Associations between contacts, organizations and deals (``record.upserted`` snapshots,
``association.changed``, ``record.deleted``) are kept as pairs, both ways. A run folds
into one change: the records whose associations are replaced (a snapshot or a deletion
resets a record's side), and each pair's final presence; applying it leaves what the
events one by one would leave.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.contracts import RecordRef
from shared.contracts.inbound import (
    AssociationChange,
    AssociationChanged,
    RecordDeleted,
    RecordUpserted,
)

RecordDataEvent = RecordUpserted | RecordDeleted | AssociationChanged
RECORD_DATA_EVENTS: tuple[type[RecordDataEvent], ...] = (
    RecordUpserted,
    RecordDeleted,
    AssociationChanged,
)

RecordKey = tuple[str, RecordRef]
"""(account, record)."""
Pair = tuple[str, RecordRef, RecordRef]
"""(account, record, associated record): one direction of an association."""


@dataclass
class LinkChange:
    """A run's effect: every pair of a ``reset`` record goes, except those ``present``
    says stay; ``present`` pairs are there after it, ``absent`` ones are not."""

    reset: dict[RecordKey, None] = field(default_factory=dict)
    pairs: dict[Pair, bool] = field(default_factory=dict)

    @property
    def present(self) -> list[Pair]:
        return [pair for pair, there in self.pairs.items() if there]

    @property
    def absent(self) -> list[Pair]:
        return [pair for pair, there in self.pairs.items() if not there]

    def _set(self, account: str, a: RecordRef, b: RecordRef, *, there: bool) -> None:
        self.pairs[(account, a, b)] = there
        self.pairs[(account, b, a)] = there

    def _reset(self, account: str, record: RecordRef) -> None:
        self.reset[(account, record)] = None
        for pair in list(self.pairs):
            if pair[0] == account and record in (pair[1], pair[2]):
                self.pairs[pair] = False

    def then(self, event: RecordDataEvent) -> None:
        account = event.account_id
        match event:
            case RecordUpserted(payload=upserted):
                self._reset(account, upserted.record)
                for other in upserted.associations:
                    if other != upserted.record:
                        self._set(account, upserted.record, other, there=True)
            case RecordDeleted(payload=deleted):
                self._reset(account, deleted.record)
            case AssociationChanged(payload=changed):
                there = changed.change is AssociationChange.ADDED
                self._set(account, changed.record, changed.associated, there=there)


def fold_record_data(events: Iterable[RecordDataEvent]) -> LinkChange:
    change = LinkChange()
    for event in events:
        change.then(event)
    return change
