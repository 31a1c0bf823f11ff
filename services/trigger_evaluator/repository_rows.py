"""What trigger-evaluator's SQL shares: the columns of an enrollment as matched, the join
with its workflow version, how a row becomes an ``EnrollmentView``, and lookup keys as
parallel arrays for ``unnest``."""

from __future__ import annotations

import functools

import asyncpg

from services.trigger_evaluator.views import EnrollmentStatus, EnrollmentView, WorkflowTriggers
from shared.contracts import RecordRef, RecordType
from shared.contracts.workflow import ExitTrigger, WorkflowSettings

ENROLLMENT = """
    e.enrollment_id, e.account_id, e.workflow_id, e.workflow_version, e.record_type,
    e.record_id, e.status, e.email, e.aliases, e.company_domain, e.enrolled_by_user_id,
    e.enrolled_at
"""

WITH_WORKFLOW = """
    SELECT m.*, w.exit_triggers, w.unenroll_company_on_reply, w.settings
    FROM ({matches}) AS m
    LEFT JOIN workflow_versions w
           ON w.account_id = m.account_id
          AND w.workflow_id = m.workflow_id
          AND w.version = m.workflow_version
"""

# The matches of every lookup key of a run, tagged with the index of the event that asked.
# One branch per kind of key, each probing its own index once per key; an enrollment
# found twice for one event is decided once, by its strongest match (``domain.decide``).


def view(row: asyncpg.Record) -> EnrollmentView:
    triggers = row["exit_triggers"]
    workflow = (
        None
        if triggers is None
        else WorkflowTriggers(
            exit_triggers=frozenset(ExitTrigger(t) for t in triggers),
            unenroll_company_on_reply=row["unenroll_company_on_reply"],
            settings=settings_of(row["settings"]),
        )
    )
    return EnrollmentView(
        enrollment_id=row["enrollment_id"],
        account_id=row["account_id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
        status=EnrollmentStatus(row["status"]),
        workflow=workflow,
        email=row["email"],
        aliases=tuple(row["aliases"]),
        company_domain=row["company_domain"],
        enrolled_by_user_id=row["enrolled_by_user_id"],
        enrolled_at=row["enrolled_at"],
    )


def settings_of(stored: str | None) -> WorkflowSettings:
    """A version's settings as projected (defaults for versions projected before them)."""
    return WorkflowSettings() if stored is None else settings_cached(stored)


@functools.lru_cache(maxsize=1024)
def settings_cached(stored: str) -> WorkflowSettings:
    # Versions never change and candidates of one version repeat: parse each once.
    return WorkflowSettings.model_validate_json(stored)


class Keys:
    """Lookup keys as parallel arrays for ``unnest``, each tagged with its event's index."""

    def __init__(self, width: int) -> None:
        self._idx: list[int] = []
        self._columns: list[list[str]] = [[] for _ in range(width)]

    def add(self, idx: int, *values: str) -> None:
        self._idx.append(idx)
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)

    def __bool__(self) -> bool:
        return bool(self._idx)

    def args(self) -> list[list[int] | list[str]]:
        return [self._idx, *self._columns]
