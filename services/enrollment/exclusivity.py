"""The account's exclusivity rule: in how many workflows a record may be live at once.
Pure; the enroll admission (``admission``) asks it under a per-record lock, so two
enrolls of one record into two workflows are decided one after the other."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.contracts import Actor
from shared.contracts.enrollment_rules import Exclusivity
from shared.contracts.events import Rejection


@dataclass(frozen=True, slots=True)
class LiveElsewhere:
    """A workflow the record is live (active or paused) in, and whether it is exclusive."""

    workflow_id: str
    exclusive: bool


@dataclass(frozen=True, slots=True)
class ExclusivitySet:
    """The account's setting changed (``account.set_exclusivity``)."""

    account_id: str
    exclusivity: Exclusivity
    actor: Actor


def rejections(
    setting: Exclusivity,
    *,
    workflow_id: str,
    exclusive: bool,
    live: Iterable[LiveElsewhere],
) -> list[Rejection]:
    """Why the account's ``setting`` refuses enrolling a record into ``workflow_id``
    (``exclusive`` or not) while it is ``live`` in those workflows (its enrollment in
    ``workflow_id`` itself is the re-enrollment rules' business). One reason: the first
    workflow (by id) that breaks the rule, named."""
    others = sorted({w for w in live if w.workflow_id != workflow_id}, key=lambda w: w.workflow_id)
    if setting is Exclusivity.ONE_WORKFLOW and others:
        other = others[0]
        return [
            Rejection(
                code="in_another_workflow",
                detail=f"the account allows one workflow at a time; the record is live in "
                f"{other.workflow_id!r}",
                workflow_id=other.workflow_id,
            )
        ]
    if setting is Exclusivity.ONE_EXCLUSIVE_WORKFLOW and exclusive:
        for other in others:
            if other.exclusive:
                return [
                    Rejection(
                        code="in_another_exclusive_workflow",
                        detail=f"the account allows one exclusive workflow at a time; the "
                        f"record is live in the exclusive {other.workflow_id!r}",
                        workflow_id=other.workflow_id,
                    )
                ]
    return []
