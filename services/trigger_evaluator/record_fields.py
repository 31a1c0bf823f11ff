"""Field set or updated from CRM snapshots: which fields a ``record.upserted`` changed.
Pure.

trigger-evaluator keeps the last snapshot of each record's fields (``record_fields``).
A run of snapshots and deletions folds into the changes each snapshot brings, against
the one before it (the stored one, for a record's first in the run). A record's first
snapshot ever is its baseline: it changes nothing (a CRM's first full sync must not look
like every field of every record being set at once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.contracts import RecordRef
from shared.contracts.inbound import FieldValue, RecordDeleted, RecordUpserted

RecordKey = tuple[str, RecordRef]
Snapshot = dict[str, Any]
"""A record's fields as JSON values (lists, not tuples: as stored)."""


def as_stored(fields: Mapping[str, FieldValue]) -> Snapshot:
    """Fields as the JSON the table keeps, so a stored and a new snapshot compare."""
    loaded: Snapshot = json.loads(json.dumps(dict(fields)))
    return loaded


def changed_fields(before: Snapshot, after: Snapshot) -> tuple[tuple[str, FieldValue], ...]:
    """Each field set, updated or cleared from ``before`` to ``after``, by name."""
    names = sorted(set(before) | set(after))
    return tuple(
        (name, _field_value(after.get(name)))
        for name in names
        if before.get(name) != after.get(name)
    )


def _field_value(value: Any) -> FieldValue:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True, slots=True)
class FieldChanges:
    """What one ``record.upserted`` changed (``changes`` empty: nothing, or a baseline)."""

    event: RecordUpserted
    changes: tuple[tuple[str, FieldValue], ...]


FieldsEvent = RecordUpserted | RecordDeleted


def last_snapshots(events: Iterable[FieldsEvent]) -> dict[RecordKey, Snapshot | None]:
    """What a run leaves stored for each of its records (None: deleted, forget it)."""
    last: dict[RecordKey, Snapshot | None] = {}
    for event in events:
        key = (event.account_id, event.payload.record)
        last[key] = as_stored(event.payload.fields) if isinstance(event, RecordUpserted) else None
    return last


def fold_fields(
    events: Iterable[FieldsEvent], stored: Mapping[RecordKey, Snapshot]
) -> list[FieldChanges]:
    """The changes each snapshot of ``events`` brings, in order, against the snapshots
    ``stored`` before the run (a record's first snapshot ever is a baseline)."""
    known: dict[RecordKey, Snapshot | None] = {}
    changes: list[FieldChanges] = []
    for event in events:
        key = (event.account_id, event.payload.record)
        before = known[key] if key in known else stored.get(key)
        if isinstance(event, RecordDeleted):
            known[key] = None
            continue
        after = as_stored(event.payload.fields)
        changed = changed_fields(before, after) if before is not None else ()
        changes.append(FieldChanges(event, changed))
        known[key] = after
    return changes
