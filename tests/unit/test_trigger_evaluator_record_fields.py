"""Which fields a CRM snapshot set, updated or cleared, against the one before it."""

from __future__ import annotations

import pytest

from services.trigger_evaluator.record_fields import FieldsEvent, fold_fields, last_snapshots
from shared.contracts.inbound import RecordUpserted, RecordUpsertedPayload
from tests.support.builders.crm_records import contact, deleted
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.inbound_events import inbound

pytestmark = pytest.mark.unit

ANN = contact("c-1")


def snapshot(**fields: object) -> RecordUpserted:
    return inbound(
        RecordUpserted, RecordUpsertedPayload.model_validate({"record": ANN, "fields": fields})
    )


def test_a_records_first_snapshot_is_its_baseline_and_changes_nothing() -> None:
    [first] = fold_fields([snapshot(stage="lead", phone="+1")], {})

    assert first.changes == ()


def test_set_updated_and_cleared_fields_are_changes_and_unchanged_ones_are_not() -> None:
    stored = {(ACCOUNT, ANN): {"stage": "lead", "phone": "+1", "tags": ["a"], "city": "Oslo"}}
    event = snapshot(stage="customer", phone="+1", tags=("a", "b"), score=3)

    [change] = fold_fields([event], stored)

    assert change.changes == (
        ("city", None),
        ("score", 3),
        ("stage", "customer"),
        ("tags", ("a", "b")),
    )


def test_a_run_compares_each_snapshot_with_the_one_before_it() -> None:
    run: list[FieldsEvent] = [
        snapshot(stage="lead"),
        snapshot(stage="lead"),
        deleted(ANN),
        snapshot(stage="won"),
    ]

    changes = [c.changes for c in fold_fields(run, {(ACCOUNT, ANN): {"stage": "new"}})]

    # After a deletion the record starts over: its next snapshot is a baseline again.
    assert changes == [(("stage", "lead"),), (), ()]
    assert last_snapshots(run) == {(ACCOUNT, ANN): {"stage": "won"}}
    assert last_snapshots(run[:3]) == {(ACCOUNT, ANN): None}
