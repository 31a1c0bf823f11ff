"""``EnrollmentStore``: the fake and PostgreSQL behave alike."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg
import pytest

from services.enrollment.domain import (
    Admitted,
    Enrollment,
    ScheduledStep,
    Status,
    VersionApplied,
    definition_hash,
)
from services.enrollment.exits import Exited
from services.enrollment.ports import EnrollmentKey, EnrollmentStore, HistoryEntry
from services.enrollment.repository import PostgresEnrollmentStore
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ExitReason, ExitSource, TriggeringEvent
from shared.contracts.workflow import WorkflowDefinition
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_domain import NOW, definition, enrollment
from tests.support.fakes.enrollment import ExitDetails, FakeEnrollmentStore

pytestmark = pytest.mark.integration

ACTOR = Actor(kind=ActorKind.API, id="test")
WF = definition(0, 3600, workflow_id="wf")
TRIGGER = TriggeringEvent(
    message_id=uuid.UUID("0b7e5a1c-0000-4000-8000-0000000000e1"),
    type="email.replied",
    topic="offramp.inbound.email.v1",
    occurred_at=NOW,
)


@dataclass
class Subject:
    """A store under contract, and a way to read back what the port never returns."""

    store: EnrollmentStore
    conn: asyncpg.Connection | None = None

    async def exit_details(self, key: EnrollmentKey) -> ExitDetails | None:
        if isinstance(self.store, FakeEnrollmentStore):
            return self.store.exits.get(key)
        assert self.conn is not None
        row = await self.conn.fetchrow(
            """SELECT exit_source, exit_actor, triggering_event FROM enrollments
               WHERE account_id = $1 AND enrollment_id = $2 AND exit_source IS NOT NULL""",
            *key,
        )
        if row is None:
            return None
        event = row["triggering_event"]
        return (
            ExitSource(row["exit_source"]),
            Actor.model_validate_json(row["exit_actor"]),
            TriggeringEvent.model_validate_json(event) if event else None,
        )

    async def history(self) -> list[HistoryEntry]:
        if isinstance(self.store, FakeEnrollmentStore):
            return self.store.entries
        assert self.conn is not None
        rows = await self.conn.fetch(
            """SELECT account_id, workflow_id, record_type, record_id, event_type, detail,
                      enrollment_id, caused_by, at
               FROM enrollment_history ORDER BY id"""
        )
        return [
            HistoryEntry(
                r["account_id"],
                r["workflow_id"],
                RecordRef(type=RecordType(r["record_type"]), id=r["record_id"]),
                r["event_type"],
                json.loads(r["detail"]),
                r["enrollment_id"],
                r["caused_by"],
                r["at"],
            )
            for r in rows
        ]


@pytest.fixture(params=["fake", "postgres"])
async def subject(request: pytest.FixtureRequest, test_env: SessionEnv) -> AsyncIterator[Subject]:
    if request.param == "fake":
        yield Subject(FakeEnrollmentStore())
        return
    async with migrated_schema(test_env, "enrollment") as conn:
        # A cache of its own: versions of other schemas' tests must not be taken for these.
        yield Subject(PostgresEnrollmentStore(conn, version_cache={}), conn)


def applied(
    wf: WorkflowDefinition = WF, *, account_id: str = "acc-a", version: int = 1
) -> VersionApplied:
    return VersionApplied(account_id, wf, version, definition_hash(wf), ACTOR)


def admitted(e: Enrollment) -> Admitted:
    step = ScheduledStep(0, WF.steps[0], e.next_due_at or NOW)
    return Admitted(e, step, None, ACTOR)


def active(
    account_id: str,
    record_id: str,
    *,
    enrollment_id: uuid.UUID | None = None,
    enrolled_at: datetime = NOW,
) -> Enrollment:
    return enrollment(
        account_id=account_id,
        record=RecordRef(type=RecordType.CONTACT, id=record_id),
        workflow_id="wf",
        enrollment_id=enrollment_id,
        enrolled_at=enrolled_at,
        next_due_at=enrolled_at + timedelta(hours=1),
    )


def exit_of(e: Enrollment, trigger: TriggeringEvent | None = None) -> Exited:
    ended = replace(e, status=Status.EXITED, ended_at=NOW, exit_reason=ExitReason.REPLIED)
    return Exited(ended, ExitReason.REPLIED, ExitSource.TRIGGER, ACTOR, trigger)


def history_of(e: Enrollment, event_type: str = "enrollment.exited") -> HistoryEntry:
    return HistoryEntry(
        e.account_id, e.workflow_id, e.record, event_type, {"x": 1}, e.enrollment_id, None, NOW
    )


# --- moved from tests/integration/test_enrollment_repository.py: both stores keep them ---


async def test_bulk_reads_and_writes_round_trip(subject: Subject) -> None:
    store = subject.store
    await store.add_workflow_versions([applied(account_id="acc-a"), applied(account_id="acc-b")])
    ours = [active("acc-a", f"c-{i}") for i in range(200)]
    theirs = active("acc-b", "c-0")  # the same record id in another account
    await store.insert_enrollments([admitted(e) for e in [*ours, theirs]])

    current = await store.current_workflows([("acc-a", "wf"), ("acc-a", "nope")])
    assert set(current) == {("acc-a", "wf")}
    live = await store.live_enrollments_for_update([("acc-a", e.record) for e in ours[:50]])
    assert {e.enrollment_id for e in live} == {e.enrollment_id for e in ours[:50]}
    in_workflow = await store.enrollments_in_workflows_for_update([("acc-b", "wf", theirs.record)])
    assert [e.enrollment_id for e in in_workflow] == [theirs.enrollment_id]

    exited = [exit_of(e) for e in ours[:10]]
    await store.save_exits(exited)
    advanced = [replace(e, current_step=1, steps_completed=1) for e in ours[10:20]]
    await store.save_progress([*advanced, replace(advanced[0], steps_completed=2)])
    await store.add_history([history_of(x.enrollment) for x in exited])

    live = await store.live_enrollments_for_update([("acc-a", e.record) for e in ours[:20]])
    assert {e.enrollment_id for e in live} == {e.enrollment_id for e in ours[10:20]}
    reloaded = {
        e.enrollment_id: e
        for e in await store.enrollments_for_update([("acc-a", e.enrollment_id) for e in ours[:20]])
    }
    assert reloaded[ours[0].enrollment_id].exit_reason is ExitReason.REPLIED
    assert reloaded[ours[10].enrollment_id].steps_completed == 2  # the last state won
    assert reloaded[ours[11].enrollment_id].current_step == 1
    # Another account's id never matches.
    assert await store.enrollments_for_update([("acc-b", ours[0].enrollment_id)]) == []


async def test_two_accounts_with_the_same_ids_stay_apart(subject: Subject) -> None:
    """The same enrollment id, workflow id and record id in two accounts are two rows."""
    store = subject.store
    shared_id = uuid.uuid4()
    await store.add_workflow_versions([applied(account_id="acc-a"), applied(account_id="acc-b")])
    ours = active("acc-a", "c-0", enrollment_id=shared_id)
    theirs = active("acc-b", "c-0", enrollment_id=shared_id)
    await store.insert_enrollments([admitted(e) for e in (ours, theirs)])

    await store.save_exits([exit_of(theirs)])
    await store.save_progress([replace(ours, current_step=1, steps_completed=1)])
    await store.add_history([history_of(theirs)])

    [a] = await store.enrollments_for_update([("acc-a", shared_id)])
    [b] = await store.enrollments_for_update([("acc-b", shared_id)])
    assert (a.account_id, a.status, a.steps_completed, a.exit_reason) == (
        "acc-a",
        Status.ACTIVE,
        1,
        None,
    )
    assert (b.account_id, b.status, b.steps_completed, b.exit_reason) == (
        "acc-b",
        Status.EXITED,
        0,
        ExitReason.REPLIED,
    )
    live = await store.live_enrollments_for_update([("acc-a", ours.record), ("acc-b", ours.record)])
    assert [(e.account_id, e.enrollment_id) for e in live] == [("acc-a", shared_id)]
    in_workflow = await store.enrollments_in_workflows_for_update([("acc-b", "wf", ours.record)])
    assert [(e.account_id, e.status) for e in in_workflow] == [("acc-b", Status.EXITED)]


# --- workflows -------------------------------------------------------------------------


async def test_a_run_of_versions_leaves_each_workflow_at_its_last(subject: Subject) -> None:
    store = subject.store
    longer = definition(0, 7200, workflow_id="wf")
    other = definition(0, workflow_id="other")

    assert await store.workflow_heads([("acc-a", "wf")]) == {}
    await store.add_workflow_versions(
        [applied(), applied(longer, version=2), applied(other), applied(account_id="acc-b")]
    )

    heads = await store.workflow_heads([("acc-a", "wf"), ("acc-a", "other"), ("acc-a", "nope")])
    assert heads == {
        ("acc-a", "wf"): (2, definition_hash(longer)),
        ("acc-a", "other"): (1, definition_hash(other)),
    }
    current = await store.current_workflows([("acc-a", "wf"), ("acc-b", "wf")])
    assert (current[("acc-a", "wf")].version, current[("acc-a", "wf")].definition) == (2, longer)
    assert current[("acc-b", "wf")].version == 1
    versions = await store.workflow_versions([("acc-a", "wf", 1), ("acc-a", "wf", 3)])
    assert list(versions) == [("acc-a", "wf", 1)]
    assert versions[("acc-a", "wf", 1)].definition == WF


async def test_a_version_is_added_once(subject: Subject) -> None:
    await subject.store.add_workflow_versions([applied()])

    with pytest.raises(asyncpg.UniqueViolationError):
        await subject.store.add_workflow_versions([applied(definition(0, 60, workflow_id="wf"))])


# --- enrollments -----------------------------------------------------------------------


async def test_a_record_is_live_in_a_workflow_once(subject: Subject) -> None:
    await subject.store.add_workflow_versions([applied()])
    first = active("acc-a", "c-1")
    await subject.store.insert_enrollments([admitted(first)])

    with pytest.raises(asyncpg.UniqueViolationError):
        await subject.store.insert_enrollments([admitted(active("acc-a", "c-1"))])


async def test_an_ended_enrollment_leaves_room_for_the_next(subject: Subject) -> None:
    store = subject.store
    await store.add_workflow_versions([applied()])
    first = active("acc-a", "c-1", enrolled_at=NOW - timedelta(days=2))
    await store.insert_enrollments([admitted(first)])
    await store.save_exits([exit_of(first)])
    second = active("acc-a", "c-1")

    await store.insert_enrollments([admitted(second)])

    every = await store.enrollments_in_workflows_for_update([("acc-a", "wf", first.record)])
    assert [(e.enrollment_id, e.status) for e in every] == [
        (first.enrollment_id, Status.EXITED),
        (second.enrollment_id, Status.ACTIVE),
    ]  # oldest first
    live = await store.live_enrollments_for_update([("acc-a", first.record)])
    assert [e.enrollment_id for e in live] == [second.enrollment_id]


async def test_enrollments_load_as_they_were_saved(subject: Subject) -> None:
    store = subject.store
    await store.add_workflow_versions([applied()])
    saved = active("acc-a", "c-1")
    await store.insert_enrollments([admitted(saved)])
    paused = replace(saved, status=Status.PAUSED, current_step=1, steps_completed=1)

    await store.save_progress([paused])

    assert await store.enrollments_for_update([("acc-a", saved.enrollment_id)]) == [paused]


async def test_the_records_time_zone_is_kept_with_its_enrollment(subject: Subject) -> None:
    store = subject.store
    await store.add_workflow_versions([applied()])
    saved = replace(active("acc-a", "c-1"), time_zone="Australia/Lord_Howe")
    await store.insert_enrollments([admitted(saved)])
    await store.save_progress([replace(saved, current_step=1)])

    (loaded,) = await store.enrollments_for_update([("acc-a", saved.enrollment_id)])
    assert loaded.time_zone == "Australia/Lord_Howe"


async def test_a_timed_pause_is_saved_with_its_end_and_id_and_forgotten_on_resume(
    subject: Subject,
) -> None:
    store = subject.store
    await store.add_workflow_versions([applied()])
    saved = active("acc-a", "c-1")
    await store.insert_enrollments([admitted(saved)])
    paused = replace(
        saved, status=Status.PAUSED, paused_until=NOW + timedelta(days=3), pause_id=uuid.uuid4()
    )

    await store.save_progress([paused])
    assert await store.enrollments_for_update([("acc-a", saved.enrollment_id)]) == [paused]
    assert await store.live_enrollments_for_update([("acc-a", saved.record)]) == [paused]

    await store.save_progress([saved])
    assert await store.enrollments_for_update([("acc-a", saved.enrollment_id)]) == [saved]


async def test_saving_an_unknown_enrollment_changes_nothing(subject: Subject) -> None:
    store = subject.store
    await store.add_workflow_versions([applied()])
    unknown = active("acc-a", "c-1")

    await store.save_progress([replace(unknown, current_step=1)])
    await store.save_exits([exit_of(unknown)])

    assert await store.enrollments_for_update([("acc-a", unknown.enrollment_id)]) == []
    assert await subject.exit_details(("acc-a", unknown.enrollment_id)) is None


async def test_an_exit_keeps_its_source_actor_and_trigger(subject: Subject) -> None:
    store = subject.store
    await store.add_workflow_versions([applied()])
    with_trigger, without = active("acc-a", "c-1"), active("acc-a", "c-2")
    await store.insert_enrollments([admitted(with_trigger), admitted(without)])

    await store.save_exits([exit_of(with_trigger, TRIGGER), exit_of(without)])

    assert await subject.exit_details(("acc-a", with_trigger.enrollment_id)) == (
        ExitSource.TRIGGER,
        ACTOR,
        TRIGGER,
    )
    assert await subject.exit_details(("acc-a", without.enrollment_id)) == (
        ExitSource.TRIGGER,
        ACTOR,
        None,
    )
    [exited] = await store.enrollments_for_update([("acc-a", without.enrollment_id)])
    assert (exited.status, exited.next_due_at, exited.ended_at) == (Status.EXITED, None, NOW)


async def test_history_is_appended_in_order(subject: Subject) -> None:
    first, second = active("acc-a", "c-1"), active("acc-b", "c-1")
    rejected = HistoryEntry(
        "acc-a",
        "wf",
        first.record,
        "enrollment.rejected",
        {"rejections": [{"code": "unknown_workflow", "detail": "no", "rule_id": None}]},
        None,
        uuid.uuid4(),
        NOW,
    )
    entries = [history_of(first), rejected, history_of(second, "enrollment.enrolled")]

    await subject.store.add_history(entries[:2])
    await subject.store.add_history(entries[2:])
    await subject.store.add_history([])

    assert await subject.history() == entries
