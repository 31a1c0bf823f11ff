"""``LifecycleStore`` (part of ``EnrollmentStore``): the fake and PostgreSQL behave alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.enrollment.domain import (
    Admitted,
    Dispatch,
    Enrollment,
    ScheduledStep,
    Status,
    VersionApplied,
    definition_hash,
)
from services.enrollment.exits import Exited
from services.enrollment.lifecycle import Sweep, WorkflowState
from services.enrollment.owners import OwnerPolicy
from services.enrollment.ports import EnrollmentStore, HistoryEntry
from services.enrollment.repository import PostgresEnrollmentStore
from services.enrollment.restore import Restored
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource, OwnerRemovalPolicy
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.enrollment_domain import NOW, definition, enrollment
from tests.support.builders.lifecycle_commands import pause_wf_cmd
from tests.support.fakes.enrollment import FakeEnrollmentStore

pytestmark = pytest.mark.integration

ACTOR = Actor(kind=ActorKind.API, id="test")
WF = definition(0, 3600, workflow_id="wf")
CONTACT = ContactDetails(email="c@acme.com")


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[EnrollmentStore]:
    if request.param == "fake":
        yield FakeEnrollmentStore()
        return
    async with migrated_schema(test_env, "enrollment") as conn:
        yield PostgresEnrollmentStore(conn, version_cache={})


async def with_workflows(store: EnrollmentStore, *ids: str, account_id: str = "acc-a") -> None:
    await store.add_workflow_versions(
        [
            VersionApplied(account_id, w, 1, definition_hash(w), ACTOR)
            for w in (definition(0, 3600, workflow_id=i) for i in ids)
        ]
    )


def active(record_id: str, *, workflow_id: str = "wf", enrolled_at: datetime = NOW) -> Enrollment:
    return enrollment(
        account_id="acc-a",
        record=RecordRef(type=RecordType.CONTACT, id=record_id),
        workflow_id=workflow_id,
        enrolled_at=enrolled_at,
        next_due_at=enrolled_at + timedelta(hours=1),
    )


async def enrolled(store: EnrollmentStore, *enrollments: Enrollment) -> None:
    await store.insert_enrollments(
        [Admitted(e, ScheduledStep(0, WF.steps[0], NOW), CONTACT, ACTOR) for e in enrollments]
    )


def exit_of(e: Enrollment, reason: ExitReason = ExitReason.REPLIED, at: datetime = NOW) -> Exited:
    ended = replace(e, status=Status.EXITED, ended_at=at, exit_reason=reason)
    return Exited(ended, reason, ExitSource.TRIGGER, ACTOR, None)


async def test_a_workflow_status_is_saved_and_counted_with_its_live_enrollments(
    store: EnrollmentStore,
) -> None:
    await with_workflows(store, "wf", "other")
    await enrolled(store, active("c-1"), active("c-2"))
    await store.save_exits([exit_of(active("c-9"))])  # unknown: changes nothing

    await store.set_workflow_statuses([WorkflowState("acc-a", "wf", WorkflowStatus.PAUSED, 2)])

    states = await store.workflow_states_for_update([("acc-a", "wf"), ("acc-a", "nope")])
    assert states == {("acc-a", "wf"): WorkflowState("acc-a", "wf", WorkflowStatus.PAUSED, 2, NOW)}
    assert await store.workflow_statuses([("acc-a", "wf"), ("acc-a", "other")]) == {
        ("acc-a", "wf"): WorkflowStatus.PAUSED,
        ("acc-a", "other"): WorkflowStatus.RUNNING,
    }


async def test_a_sweep_loads_live_not_exiting_enrollments_by_its_cutoff_in_chunks(
    store: EnrollmentStore,
) -> None:
    await with_workflows(store, "wf", "other")
    early = [active(f"c-{i}") for i in range(5)]
    late = active("c-late", enrolled_at=NOW + timedelta(minutes=1))
    elsewhere = active("c-0", workflow_id="other")
    await enrolled(store, *early, late, elsewhere)
    await store.save_exits([exit_of(early[0])])
    command = pause_wf_cmd("wf", account_id="acc-a")
    sweep = Sweep(uuid.uuid4(), "acc-a", "wf", ExitReason.WORKFLOW_PAUSED, ACTOR, NOW)

    await store.start_sweeps([(sweep, command), (sweep, command)])
    found = await store.next_sweep_for_update()
    first = await store.live_in_workflow_for_update(sweep, limit=3)
    rest = await store.live_in_workflow_for_update(sweep, limit=10)
    await store.save_sweep(replace(sweep, exited=4, chunks=2, done=True))

    assert found == (sweep, command)
    wanted = sorted(e.enrollment_id for e in early[1:])
    assert [e.enrollment_id for e in first] == wanted[:3]
    assert sorted(e.enrollment_id for e in rest) == wanted
    assert await store.next_sweep_for_update() is None


async def test_activity_changes_are_returned_once_and_numbered(store: EnrollmentStore) -> None:
    await with_workflows(store, "wf", "idle")
    assert await store.refresh_activity() == []
    e = active("c-1")
    await enrolled(store, e)

    became_active = await store.refresh_activity()
    unchanged = await store.refresh_activity()
    await store.save_exits([exit_of(e)])
    became_inactive = await store.refresh_activity()

    assert [(c.workflow_id, c.active, c.seq) for c in became_active] == [("wf", True, 1)]
    assert unchanged == []
    assert [(c.workflow_id, c.active, c.seq) for c in became_inactive] == [("wf", False, 2)]


async def test_the_order_puts_positioned_workflows_first_then_the_rest_by_id(
    store: EnrollmentStore,
) -> None:
    await with_workflows(store, "b", "a", "d", "c")
    assert await store.workflow_order_for_update("acc-a") == ["a", "b", "c", "d"]

    await store.set_workflow_order("acc-a", ["c", "a"])
    await store.set_workflow_statuses([WorkflowState("acc-a", "b", WorkflowStatus.DELETED, 0)])

    assert await store.workflow_order_for_update("acc-a") == ["c", "a", "d"]
    assert await store.workflow_order_for_update("acc-other") == []


async def test_restores_insert_the_new_enrollment_and_mark_the_old_one(
    store: EnrollmentStore,
) -> None:
    await with_workflows(store, "wf")
    replied, manual, other = active("c-1"), active("c-2"), active("c-3")
    await enrolled(store, replied, manual, other)
    await store.save_exits(
        [
            exit_of(replied, at=NOW),
            exit_of(manual, ExitReason.MANUAL, at=NOW + timedelta(minutes=1)),
        ]
    )
    old = (await store.exits_for_update([("acc-a", replied.enrollment_id)]))[0]
    new = replace(active("c-1"), enrollment_id=uuid.uuid4(), current_step=1, steps_completed=1)

    picked = await store.exits_in_workflow_for_update(
        ("acc-a", "wf"), reason=None, exited_from=None, exited_until=None, limit=10
    )
    by_reason = await store.exits_in_workflow_for_update(
        ("acc-a", "wf"), reason=ExitReason.MANUAL, exited_from=None, exited_until=None, limit=10
    )
    by_time = await store.exits_in_workflow_for_update(
        ("acc-a", "wf"),
        reason=None,
        exited_from=NOW,
        exited_until=NOW + timedelta(seconds=30),
        limit=10,
    )
    await store.save_restores(
        [Restored(new, old.enrollment, ScheduledStep(1, WF.steps[1], NOW), CONTACT, ACTOR)]
    )
    after = await store.exits_in_workflow_for_update(
        ("acc-a", "wf"), reason=None, exited_from=None, exited_until=None, limit=10
    )

    assert (old.enrollment.status, old.contact, old.restored_as) == (Status.EXITED, CONTACT, None)
    assert [x.enrollment.enrollment_id for x in picked] == [
        replied.enrollment_id,
        manual.enrollment_id,
    ]
    assert [x.enrollment.enrollment_id for x in by_reason] == [manual.enrollment_id]
    assert [x.enrollment.enrollment_id for x in by_time] == [replied.enrollment_id]
    assert [x.enrollment.enrollment_id for x in after] == [manual.enrollment_id]
    both = {
        x.enrollment.enrollment_id: x
        for x in await store.exits_for_update(
            [("acc-a", replied.enrollment_id), ("acc-a", new.enrollment_id)]
        )
    }
    restored_old, restored_new = both[replied.enrollment_id], both[new.enrollment_id]
    assert restored_old.restored_as == new.enrollment_id
    assert (restored_new.enrollment.status, restored_new.enrollment.current_step) == (
        Status.ACTIVE,
        1,
    )
    assert restored_new.contact == CONTACT


async def test_owned_workflows_are_the_live_ones_whose_current_version_the_user_owns(
    store: EnrollmentStore,
) -> None:
    def owned(workflow_id: str, owner: str | None, version: int = 1) -> VersionApplied:
        wf = definition(0, workflow_id=workflow_id).model_copy(update={"owner_user_id": owner})
        return VersionApplied("acc-a", wf, version, definition_hash(wf), ACTOR)

    await store.add_workflow_versions(
        [owned("mine", "u-7"), owned("given-away", "u-7"), owned("gone", "u-7")]
    )
    await store.add_workflow_versions([owned("given-away", "u-8", version=2)])
    await store.set_workflow_statuses([WorkflowState("acc-a", "gone", WorkflowStatus.DELETED, 0)])
    await enrolled(store, active("c-1", workflow_id="mine"))

    found = await store.owned_workflows_for_update("acc-a", "u-7")
    default = await store.owner_policy("acc-a")
    await store.set_owner_policy("acc-a", OwnerPolicy(OwnerRemovalPolicy.REASSIGN, "u-9"))
    await store.set_owner_policy("acc-a", OwnerPolicy(OwnerRemovalPolicy.REASSIGN, "u-10"))

    assert [(o.state.workflow_id, o.state.live, o.current.version) for o in found] == [
        ("mine", 1, 1)
    ]
    assert found[0].definition_hash == definition_hash(found[0].current.definition)
    assert default == OwnerPolicy()
    assert await store.owner_policy("acc-a") == OwnerPolicy(OwnerRemovalPolicy.REASSIGN, "u-10")
    assert await store.owner_policy("acc-b") == OwnerPolicy()


async def test_exits_by_an_exclusion_rule_are_picked_by_the_rule_and_its_version(
    store: EnrollmentStore,
) -> None:
    await with_workflows(store, "wf")
    by_rule, by_reply = active("c-1"), active("c-2")
    await enrolled(store, by_rule, by_reply)
    await store.save_exits([exit_of(by_rule, ExitReason.EXCLUSION_MATCHED), exit_of(by_reply)])
    hit = {"rule_id": "r-1", "version": 2, "level": "global", "condition": "x", "values_seen": {}}
    await store.add_history(
        [
            HistoryEntry(
                "acc-a",
                "wf",
                e.record,
                "enrollment.exited",
                {"exclusion": hit} if e is by_rule else {},
                e.enrollment_id,
                None,
                NOW,
            )
            for e in (by_rule, by_reply)
        ]
    )

    async def picked(rule_id: str, version: int | None) -> list[uuid.UUID]:
        found = await store.exits_in_workflow_for_update(
            ("acc-a", "wf"),
            reason=None,
            exited_from=None,
            exited_until=None,
            limit=10,
            rule_id=rule_id,
            rule_version=version,
        )
        return [x.enrollment.enrollment_id for x in found]

    assert await picked("r-1", None) == [by_rule.enrollment_id]
    assert await picked("r-1", 2) == [by_rule.enrollment_id]
    assert await picked("r-1", 1) == []
    assert await picked("r-2", None) == []


async def test_a_version_s_live_enrollments_load_free_first_and_migrate_to_another_version(
    store: EnrollmentStore,
) -> None:
    await with_workflows(store, "wf")
    v2 = definition(0, 3600, 7200, workflow_id="wf")
    await store.add_workflow_versions([VersionApplied("acc-a", v2, 2, definition_hash(v2), ACTOR)])
    free, busy, gone = active("c-1"), active("c-2"), active("c-3")
    await enrolled(store, free, busy, gone)
    granted = replace(busy, dispatch=Dispatch(uuid.uuid4(), 0, "s0", NOW + timedelta(minutes=5)))
    await store.save_progress([granted])
    await store.save_exits([exit_of(gone)])

    live = await store.live_of_version_for_update(("acc-a", "wf"), 1, limit=10)
    first = await store.live_of_version_for_update(("acc-a", "wf"), 1, limit=1)
    await store.save_migrations(
        [replace(free, workflow_version=2, current_step=1, steps_completed=1)]
    )
    left = await store.live_of_version_for_update(("acc-a", "wf"), 1, limit=10)
    (moved,) = await store.enrollments_for_update([("acc-a", free.enrollment_id)])

    assert [e.enrollment_id for e in live] == [free.enrollment_id, busy.enrollment_id]
    assert [e.enrollment_id for e in first] == [free.enrollment_id]
    assert [e.enrollment_id for e in left] == [busy.enrollment_id]
    assert (moved.workflow_version, moved.current_step, moved.steps_completed) == (2, 1, 1)
    assert moved.next_due_at == free.next_due_at
