"""What the lifecycle handlers need from storage beyond ``EnrollmentStore``'s basics:
workflow status and order, the chunked exits of a paused or deleted workflow, activity,
and restores. ``EnrollmentStore`` includes it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.enrollment.domain import Enrollment
from services.enrollment.lifecycle import ActivityChanged, Sweep, WorkflowState
from services.enrollment.owners import Owned, OwnerPolicy
from services.enrollment.restore import Exit, Restored
from shared.contracts import Message
from shared.contracts.commands import ExitReason
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)

WorkflowKey = tuple[str, str]
EnrollmentKey = tuple[str, uuid.UUID]


class LifecycleStore(Protocol):
    async def workflow_states_for_update(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowState]:
        """Each existing workflow's status and live enrollment count; its row locked until
        commit (an enroll into it waits, then sees the new status)."""
        ...

    async def workflow_statuses(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowStatus]:
        """Each existing workflow's status, its row key-share locked until commit: a pause
        or delete of it waits for this transaction, so none admits into a paused one."""
        ...

    async def set_workflow_statuses(self, states: Sequence[WorkflowState]) -> None:
        """Save each workflow's status (the last one wins)."""
        ...

    async def start_sweeps(self, sweeps: Sequence[tuple[Sweep, Message]]) -> None:
        """Keep each sweep with the command that started it (its exits are caused by it)."""
        ...

    async def next_sweep_for_update(self) -> tuple[Sweep, Message] | None:
        """The oldest unfinished sweep, locked; replicas skip each other's."""
        ...

    async def live_in_workflow_for_update(self, sweep: Sweep, *, limit: int) -> list[Enrollment]:
        """Up to ``limit`` live, not exiting enrollments of the sweep's workflow enrolled
        by its cutoff, locked in id order."""
        ...

    async def live_of_version_for_update(
        self, key: WorkflowKey, version: int, *, limit: int
    ) -> list[Enrollment]:
        """Up to ``limit`` live enrollments of one version of a workflow, locked: those
        with nothing in flight (no grant, not exiting) first, each group in id order."""
        ...

    async def save_migrations(self, enrollments: Sequence[Enrollment]) -> None:
        """Save each enrollment's workflow version, current step and steps completed."""
        ...

    async def save_sweep(self, sweep: Sweep) -> None:
        """Save the sweep's progress (and that it is done)."""
        ...

    async def refresh_activity(self) -> list[ActivityChanged]:
        """Save whether each workflow has a live enrollment now; return those whose answer
        changed, each change numbered (``ActivityChanged.seq``)."""
        ...

    async def workflow_order_for_update(self, account_id: str) -> list[str]:
        """The account's workflows that are not deleted, in their order, locked."""
        ...

    async def set_workflow_order(self, account_id: str, workflow_ids: Sequence[str]) -> None:
        """Save the account's order of workflows."""
        ...

    async def exits_for_update(self, keys: Sequence[EnrollmentKey]) -> list[Exit]:
        """Those of the enrollments that exist (any status), with contact and restore."""
        ...

    async def exits_in_workflow_for_update(
        self,
        key: WorkflowKey,
        *,
        reason: ExitReason | None,
        exited_from: datetime | None,
        exited_until: datetime | None,
        limit: int,
        rule_id: str | None = None,
        rule_version: int | None = None,
    ) -> list[Exit]:
        """Up to ``limit`` exited, not restored enrollments of a workflow matching the
        filters (``rule_id``/``rule_version``: exited by that exclusion rule), oldest exit
        first, locked."""
        ...

    async def owned_workflows_for_update(self, account_id: str, user_id: str) -> list[Owned]:
        """The account's workflows, not deleted, whose current version ``user_id`` owns,
        locked, by id."""
        ...

    async def owner_policy(self, account_id: str) -> OwnerPolicy:
        """The account's owner-removal setting (``exit`` unless set)."""
        ...

    async def set_owner_policy(self, account_id: str, setting: OwnerPolicy) -> None:
        """Save the account's owner-removal setting."""
        ...

    async def save_restores(self, restored: Sequence[Restored]) -> None:
        """Insert each restore's new enrollment and mark the old one restored as it."""
        ...
