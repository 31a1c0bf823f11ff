"""Pure decisions about workflows whose owner was removed (deleted or downgraded). No I/O.

The account decides (``account.set_owner_removal``, default ``exit``): every live
enrollment of the workflows the user owns exits with reason ``owner_removed`` (in chunks,
as a workflow pause's do: a ``Sweep``), or each such workflow gets a new version owned by
the named user and nobody exits (running enrollments keep their version, as with any edit).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.enrollment.domain import (
    Unchanged,
    VersionApplied,
    WorkflowVersion,
    decide_apply,
)
from services.enrollment.lifecycle import Sweep, WorkflowState
from shared.contracts import Actor
from shared.contracts.commands import ExitReason, OwnerRemovalPolicy


@dataclass(frozen=True, slots=True)
class OwnerPolicy:
    policy: OwnerRemovalPolicy = OwnerRemovalPolicy.EXIT
    reassign_to_user_id: str | None = None


@dataclass(frozen=True, slots=True)
class OwnerRemovalSet:
    account_id: str
    setting: OwnerPolicy
    actor: Actor


@dataclass(frozen=True, slots=True)
class Owned:
    """A workflow the removed user owns: its state, current version and definition hash."""

    state: WorkflowState
    current: WorkflowVersion
    definition_hash: str


@dataclass(frozen=True, slots=True)
class OwnerRemoved:
    state: WorkflowState
    user_id: str
    setting: OwnerPolicy
    sweep: Sweep | None
    """The exits it starts (policy ``exit``, with live enrollments)."""
    reassigned: VersionApplied | None
    """The version owned by the new owner (policy ``reassign``)."""


def decide_owner_removal(
    owned: list[Owned],
    *,
    user_id: str,
    setting: OwnerPolicy,
    actor: Actor,
    sweep_id_for: Callable[[str], uuid.UUID],
    now: datetime,
) -> list[OwnerRemoved] | Unchanged:
    """What happens to each workflow ``user_id`` owns (deleted ones are not among them)."""
    if not owned:
        return Unchanged(f"user {user_id!r} owns no workflow", "owns_no_workflow")
    decided = []
    for workflow in owned:
        state = workflow.state
        if setting.policy is OwnerRemovalPolicy.REASSIGN and setting.reassign_to_user_id:
            definition = workflow.current.definition.model_copy(
                update={"owner_user_id": setting.reassign_to_user_id}
            )
            applied = decide_apply(
                (workflow.current.version, workflow.definition_hash),
                account_id=state.account_id,
                definition=definition,
                actor=actor,
            )
            reassigned = applied if isinstance(applied, VersionApplied) else None
            decided.append(OwnerRemoved(state, user_id, setting, None, reassigned))
            continue
        sweep = Sweep(
            sweep_id_for(state.workflow_id),
            state.account_id,
            state.workflow_id,
            ExitReason.OWNER_REMOVED,
            actor,
            cutoff=now,
        )
        decided.append(OwnerRemoved(state, user_id, setting, sweep, None))
    return decided
