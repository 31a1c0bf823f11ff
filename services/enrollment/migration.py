"""Pure migration decisions (``workflow.migrate``): whether a step map from one version
of a workflow to another is valid, and what becomes of each live enrollment. No I/O.

An enrollment moves to the new index of its current step, or, when that step was removed,
to the next mapped one; it keeps its due time either way. One with a send in flight
(granted) or exiting stays where it is, with the reason: migrate it later. One with no
mapped step left stays too (``no_step_left``): the map should keep a last step for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from services.enrollment.domain import Enrollment, ScheduledStep, Status, Unchanged, WorkflowVersion


def invalid_map(
    step_map: Sequence[int | None], old: WorkflowVersion | None, new: WorkflowVersion | None
) -> Unchanged | None:
    """Why the migration cannot run (None: it can): a version is unknown, they are the
    same, or the map does not list every old step, names a step the new version does
    not have, or changes the steps' order."""
    if old is None or new is None:
        missing = "from" if old is None else "to"
        return Unchanged(f"the {missing} version of the workflow does not exist", "unknown_version")
    if old.version == new.version:
        return Unchanged("the from and to versions are the same", "same_version")
    old_steps, new_steps = len(old.definition.steps), len(new.definition.steps)
    if len(step_map) != old_steps:
        why = f"the map lists {len(step_map)} steps; version {old.version} has {old_steps}"
        return Unchanged(why, "invalid_step_map")
    targets = [t for t in step_map if t is not None]
    if bad := [t for t in targets if not 0 <= t < new_steps]:
        why = f"step {bad[0]} does not exist in version {new.version} ({new_steps} steps)"
        return Unchanged(why, "invalid_step_map")
    if any(b <= a for a, b in itertools.pairwise(targets)):
        return Unchanged(
            "the map must keep the steps' order, each to its own step", "invalid_step_map"
        )
    return None


@dataclass(frozen=True, slots=True)
class Moved:
    enrollment: Enrollment
    """After the move: on the new version, at its new step."""
    moved_from: Enrollment
    scheduled: ScheduledStep | None
    """The step to arm again (None when paused: its resume schedules it)."""


@dataclass(frozen=True, slots=True)
class Skipped:
    enrollment: Enrollment
    reason: str


def target_step(step_map: Sequence[int | None], current_step: int) -> int | None:
    """The new index of ``current_step``, else of the next old step that was kept."""
    return next((t for t in step_map[current_step:] if t is not None), None)


def decide_migration(
    enrollment: Enrollment, step_map: Sequence[int | None], new: WorkflowVersion
) -> Moved | Skipped:
    """Move one live enrollment of the old version (its map validated) to ``new``."""
    if enrollment.pending_exit is not None:
        return Skipped(enrollment, "exiting")
    if enrollment.dispatch is not None:
        return Skipped(enrollment, "granted")
    index = target_step(step_map, enrollment.current_step)
    if index is None:
        return Skipped(enrollment, "no_step_left")
    moved = replace(
        enrollment, workflow_version=new.version, current_step=index, steps_completed=index
    )
    due: datetime | None = enrollment.next_due_at
    scheduled = (
        ScheduledStep(index, new.definition.steps[index], due)
        if enrollment.status is Status.ACTIVE and due is not None
        else None
    )
    return Moved(moved, enrollment, scheduled)
