"""Pure migration decisions: the step map is validated first, then each live enrollment
moves to its step's new index (or the next kept step's), keeping its due time."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from services.enrollment.domain import Dispatch, PendingExit, Status, Unchanged
from services.enrollment.migration import Moved, Skipped, decide_migration, invalid_map
from shared.contracts import Actor, ActorKind
from shared.contracts.commands import ExitReason, ExitSource
from tests.support.builders.enrollment_domain import NOW, enrollment, workflow

OLD = workflow(0, 24, 48, 72, version=1)  # four steps
NEW = workflow(0, 24, 96, version=2)  # three steps
DUE = NOW + timedelta(hours=5)
USER = Actor(kind=ActorKind.USER, id="u-1")


@pytest.mark.parametrize(
    ("step_map", "code"),
    [
        ((0, 1, None), "invalid_step_map"),  # an old step not listed
        ((0, 1, None, 2, 0), "invalid_step_map"),  # more than the old steps
        ((0, 1, None, 3), "invalid_step_map"),  # no step 3 in the new version
        ((0, 2, 1, None), "invalid_step_map"),  # order changed
        ((0, 1, 1, 2), "invalid_step_map"),  # two old steps to one new
        ((0, -1, None, 2), "invalid_step_map"),
    ],
)
def test_an_invalid_step_map_is_refused_with_the_reason(
    step_map: tuple[int | None, ...], code: str
) -> None:
    refused = invalid_map(step_map, OLD, NEW)

    assert isinstance(refused, Unchanged)
    assert refused.code == code


def test_a_valid_map_may_remove_steps_and_leave_new_ones_unmapped() -> None:
    assert invalid_map((0, None, 2, None), OLD, NEW) is None


def test_unknown_or_equal_versions_are_refused() -> None:
    assert (missing := invalid_map((0, 1, 2), NEW, None)) is not None
    assert missing.code == "unknown_version"
    assert (refused := invalid_map((0, 1, 2), None, NEW)) is not None
    assert refused.code == "unknown_version"
    assert (same := invalid_map((0, 1, 2), NEW, NEW)) is not None
    assert same.code == "same_version"


def test_an_enrollment_moves_to_its_step_s_new_index_keeping_its_due_time() -> None:
    e = enrollment(current_step=2, steps_completed=2, next_due_at=DUE)

    moved = decide_migration(e, (0, None, 1, 2), NEW)

    assert isinstance(moved, Moved)
    new = moved.enrollment
    assert (new.workflow_version, new.current_step, new.steps_completed) == (2, 1, 1)
    assert new.next_due_at == DUE
    assert moved.scheduled is not None
    assert (moved.scheduled.index, moved.scheduled.due_at) == (1, DUE)
    assert moved.scheduled.step == NEW.definition.steps[1]


def test_an_enrollment_at_a_removed_step_moves_to_the_next_kept_one_keeping_its_due_time() -> None:
    e = enrollment(current_step=1, steps_completed=1, next_due_at=DUE)

    moved = decide_migration(e, (0, None, 1, 2), NEW)

    assert isinstance(moved, Moved)
    assert (moved.enrollment.current_step, moved.enrollment.next_due_at) == (1, DUE)


def test_an_enrollment_with_no_kept_step_left_is_skipped() -> None:
    e = enrollment(current_step=3, steps_completed=3, next_due_at=DUE)

    assert decide_migration(e, (0, 1, 2, None), NEW) == Skipped(e, "no_step_left")


def test_a_paused_enrollment_moves_without_arming_its_step() -> None:
    e = enrollment(Status.PAUSED, current_step=1, steps_completed=1)

    moved = decide_migration(e, (0, 1, 2, None), NEW)

    assert isinstance(moved, Moved)
    assert (moved.enrollment.status, moved.scheduled) == (Status.PAUSED, None)


def test_an_enrollment_with_a_send_in_flight_or_exiting_is_skipped_with_the_reason() -> None:
    base = enrollment(current_step=1, steps_completed=1, next_due_at=DUE)
    granted = replace(base, dispatch=Dispatch(uuid.uuid4(), 1, "s1", DUE))
    pending = PendingExit(ExitReason.MANUAL, ExitSource.MANUAL, USER, None, NOW)
    exiting = replace(base, pending_exit=pending)

    assert decide_migration(granted, (0, 1, 2, None), NEW) == Skipped(granted, "granted")
    assert decide_migration(exiting, (0, 1, 2, None), NEW) == Skipped(exiting, "exiting")
