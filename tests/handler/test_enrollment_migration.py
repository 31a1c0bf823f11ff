"""``workflow.migrate`` on the harness (batch and one by one): the map is validated first,
a dry run says what would happen to each live enrollment, and the real run does exactly
that: each moves to its step's new index (a removed step's next), keeping its due time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.contracts.events import EnrollmentEnrolled, EnrollmentStepScheduled
from shared.contracts.migration import (
    EnrollmentMigrated,
    MigrateWorkflow,
    MigrateWorkflowPayload,
    MigrationOutcome,
    WorkflowMigrated,
    WorkflowMigrationPreviewed,
)
from tests.support.builders.enrollment_commands import (
    ALICE,
    BOB,
    apply_cmd,
    definition,
    enroll_cmd,
    sent_evt,
)
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER
from tests.support.builders.enrollment_setup import (
    EnrollmentHarness,
    answers,
    enrolled_in,
    enrollment_harness,
    only,
)

pytestmark = pytest.mark.handler

HOUR = timedelta(hours=1)


@pytest.fixture
def h() -> EnrollmentHarness:
    return enrollment_harness()


def migrate_cmd(
    step_map: tuple[int | None, ...], *, dry_run: bool, to_version: int = 2
) -> MigrateWorkflow:
    payload = MigrateWorkflowPayload(
        workflow_id="onboarding",
        from_version=1,
        to_version=to_version,
        step_map=step_map,
        dry_run=dry_run,
        actor=USER,
    )
    return MigrateWorkflow.create(account_id=ACCOUNT, payload=payload)


async def two_versions(h: EnrollmentHarness) -> None:
    """ALICE at step 0, BOB at step 1 of version 1 (0, 24, 48 h); version 2 drops step 1."""
    await enrolled_in(h, definition(0, 24, 48))
    bob = only(await h.when(enroll_cmd(BOB)), EnrollmentEnrolled)
    await h.when(sent_evt(bob, 0, T0))
    await h.given(apply_cmd(definition(0, 96)))


async def test_a_migrate_dry_run_says_what_the_migration_then_does(h: EnrollmentHarness) -> None:
    await two_versions(h)
    bob_due = next(e.next_due_at for e in h.store.enrollments.values() if e.record == BOB)

    preview = only(
        await h.when(migrate_cmd((0, None, 1), dry_run=True)), WorkflowMigrationPreviewed
    )
    unchanged = {k: e.workflow_version for k, e in h.store.enrollments.items()}
    outcome = await h.when(migrate_cmd((0, None, 1), dry_run=False))

    report = only(outcome, WorkflowMigrated)
    assert set(unchanged.values()) == {1}
    assert report.payload.candidates == preview.payload.candidates
    assert (report.payload.moves, report.payload.skipped, report.payload.more) == (2, 0, False)
    moved = {c.record: (c.from_step, c.outcome, c.to_step) for c in report.payload.candidates}
    assert moved == {
        ALICE: (0, MigrationOutcome.MOVES, 0),
        BOB: (1, MigrationOutcome.MOVES, 1),
    }
    for e in h.store.enrollments.values():
        assert e.workflow_version == 2
    bob = next(e for e in h.store.enrollments.values() if e.record == BOB)
    assert (bob.current_step, bob.next_due_at) == (1, bob_due)
    assert {m.payload.record for m in outcome.of_type(EnrollmentMigrated)} == {ALICE, BOB}
    scheduled = {
        m.payload.record: (m.payload.step_index, m.payload.workflow_version, m.payload.due_at)
        for m in outcome.of_type(EnrollmentStepScheduled)
    }
    assert scheduled[BOB] == (1, 2, bob_due)
    moves = [e for e in h.store.entries if e.event_type == EnrollmentMigrated.TYPE]
    assert sorted((e.detail["from_step"], e.detail["step"]) for e in moves) == [(0, 0), (1, 1)]


async def test_a_second_migrate_finds_nobody_left_on_the_old_version(h: EnrollmentHarness) -> None:
    await two_versions(h)
    await h.when(migrate_cmd((0, None, 1), dry_run=False))

    again = only(await h.when(migrate_cmd((0, None, 1), dry_run=False)), WorkflowMigrated)

    assert (again.payload.moves, again.payload.candidates) == (0, ())


@pytest.mark.parametrize(
    ("step_map", "to_version", "code"),
    [
        ((0, 1), 2, "invalid_step_map"),
        ((0, 1, 2), 2, "invalid_step_map"),
        ((1, None, 0), 2, "invalid_step_map"),
        ((0, None, 1), 7, "unknown_version"),
        ((0, 1, 2), 1, "same_version"),
    ],
)
async def test_a_migrate_with_an_invalid_map_is_refused_and_moves_nobody(
    h: EnrollmentHarness, step_map: tuple[int | None, ...], to_version: int, code: str
) -> None:
    await two_versions(h)

    outcome = await h.when(migrate_cmd(step_map, dry_run=False, to_version=to_version))

    assert answers(outcome) == [code]
    assert {e.workflow_version for e in h.store.enrollments.values()} == {1}
