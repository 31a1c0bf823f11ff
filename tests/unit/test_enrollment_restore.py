"""Pure restore decisions, and any interleaving of duplicate exit, pause, resume and
restore commands: it ends in the state the last applicable one dictates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.enrollment.domain import Enrollment, Status, Unchanged
from services.enrollment.exits import Exited, decide_exit
from services.enrollment.pauses import Paused, Resumed, decide_pause, decide_resume
from services.enrollment.restore import Exit, Restored, decide_restore
from shared.contracts import Actor, ActorKind
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource
from shared.contracts.events import Rejection
from shared.contracts.lifecycle_events import WorkflowStatus
from shared.contracts.workflow import SendWindow
from tests.support.builders.enrollment_domain import NOW, enrollment, workflow

pytestmark = pytest.mark.unit

USER = Actor(kind=ActorKind.USER, id="u-1")
HOUR = 3600
THREE_STEPS = workflow(0, HOUR, 2 * HOUR, version=1)
CONTACT = ContactDetails(email="c-1@acme.com")


def exited(current_step: int = 1, steps_completed: int = 1) -> Enrollment:
    return replace(
        enrollment(current_step=current_step, steps_completed=steps_completed),
        status=Status.EXITED,
        exit_reason=ExitReason.EXCLUSION_MATCHED,
        ended_at=NOW - timedelta(hours=1),
    )


def restore(
    old: Enrollment,
    *,
    restored_as: uuid.UUID | None = None,
    status: WorkflowStatus | None = WorkflowStatus.RUNNING,
    live: bool = False,
    blocked_by: Rejection | None = None,
    exclusivity: Rejection | None = None,
) -> Restored | Unchanged:
    return decide_restore(
        Exit(old, CONTACT, restored_as),
        version=THREE_STEPS,
        workflow_status=status,
        live_in_workflow=live,
        blocked_by=blocked_by,
        exclusivity=exclusivity,
        enrollment_id=uuid.uuid4(),
        actor=USER,
        now=NOW,
    )


def test_a_restore_runs_the_step_after_the_last_completed_one_its_delay_from_now() -> None:
    old = exited(current_step=1, steps_completed=1)

    decision = restore(old)

    assert isinstance(decision, Restored)
    new = decision.enrollment
    assert (new.status, new.current_step, new.steps_completed) == (Status.ACTIVE, 1, 1)
    assert (new.record, new.workflow_id, new.workflow_version) == (
        old.record,
        old.workflow_id,
        old.workflow_version,
    )
    assert decision.scheduled.due_at == NOW + timedelta(seconds=HOUR)
    assert (decision.restored_from, decision.contact) == (old, CONTACT)


def test_a_step_sent_while_the_exit_waited_counts_as_completed() -> None:
    decision = restore(exited(current_step=1, steps_completed=2))

    assert isinstance(decision, Restored)
    assert decision.scheduled.index == 2


@pytest.mark.parametrize(
    ("kwargs", "old", "code"),
    [
        ({}, enrollment(), "not_exited"),
        ({}, replace(exited(), status=Status.COMPLETED), "not_exited"),
        ({"restored_as": uuid.uuid4()}, exited(), "already_restored"),
        ({"status": WorkflowStatus.PAUSED}, exited(), "workflow_paused"),
        ({"status": WorkflowStatus.DELETED}, exited(), "workflow_deleted"),
        ({"live": True}, exited(), "already_enrolled"),
        (
            {"blocked_by": Rejection(code="excluded", detail="domain example.com is excluded")},
            exited(),
            "exclusion_blocks",
        ),
        (
            {"exclusivity": Rejection(code="in_another_workflow", detail="live in 'b'")},
            exited(),
            "in_another_workflow",
        ),
        ({}, exited(current_step=2, steps_completed=3), "nothing_left"),
    ],
)
def test_a_restore_that_cannot_apply_says_why(
    kwargs: dict[str, object], old: Enrollment, code: str
) -> None:
    decision = restore(old, **kwargs)  # type: ignore[arg-type]

    assert isinstance(decision, Unchanged)
    assert decision.code == code


def test_a_restored_step_is_planned_in_the_workflow_s_send_window() -> None:
    windowed = workflow(0, HOUR, version=1, send_window=SendWindow())  # 9-17 weekdays, UTC
    old = replace(exited(), time_zone="Europe/Paris")
    saturday_night = datetime(2026, 3, 7, 22, 0, tzinfo=UTC)

    decision = decide_restore(
        Exit(old, CONTACT, None),
        version=windowed,
        workflow_status=WorkflowStatus.RUNNING,
        live_in_workflow=False,
        blocked_by=None,
        enrollment_id=uuid.uuid4(),
        actor=USER,
        now=saturday_night,
    )

    assert isinstance(decision, Restored)
    monday_nine_in_paris = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert decision.scheduled.due_at == monday_nine_in_paris
    assert decision.enrollment.time_zone == "Europe/Paris"


# --- any interleaving ---------------------------------------------------------------

OPS = ("exit", "pause", "resume", "restore")
ORACLE = {  # what each command does to the record in the workflow, when it applies
    ("exit", "active"): "exited",
    ("exit", "paused"): "exited",
    ("pause", "active"): "paused",
    ("resume", "paused"): "active",
    ("restore", "exited"): "active",
}


@dataclass
class RecordInWorkflow:
    """The record's enrollments in one workflow, as the handlers keep them."""

    enrollments: list[Enrollment] = field(default_factory=lambda: [enrollment()])
    restored_as: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)

    @property
    def current(self) -> Enrollment:
        return self.enrollments[-1]

    def apply(self, op: str) -> bool:
        """Apply one command as the handlers do; True when it changed something."""
        current = self.current
        if op == "restore":
            decision: object = restore(
                current,
                restored_as=self.restored_as.get(current.enrollment_id),
                live=current.status.live,
            )
        elif not current.status.live:
            return False  # no live enrollment to name: answered, nothing changes
        elif op == "exit":
            decision = decide_exit(
                current,
                reason=ExitReason.MANUAL,
                source=ExitSource.MANUAL,
                actor=USER,
                triggering_event=None,
                agents_may_stop=True,
                now=NOW,
            )
        elif op == "pause":
            decision = decide_pause(
                current, until=None, reason="manual", actor=USER, pause_id=uuid.uuid4()
            )
        else:
            decision = decide_resume(current, THREE_STEPS, actor=USER, now=NOW)
        if isinstance(decision, Unchanged):
            assert decision.code != "unchanged", decision  # an answer says why
            return False
        assert isinstance(decision, Exited | Paused | Resumed | Restored)
        if isinstance(decision, Restored):
            self.restored_as[current.enrollment_id] = decision.enrollment.enrollment_id
            self.enrollments.append(decision.enrollment)
        else:
            self.enrollments[-1] = decision.enrollment
        return True


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.booleans()), max_size=12))
def test_any_interleaving_ends_as_the_last_applicable_command_dictates(
    commands: list[tuple[str, bool]],
) -> None:
    """Each command (some sent twice in a row) changes the record exactly when the
    table says it applies; a duplicate never changes anything; at most one enrollment of
    the record is live; and the end state is what the last applicable command made it."""
    record = RecordInWorkflow()
    state = "active"  # enrolled
    for op, duplicated in commands:
        applies = (op, state) in ORACLE
        assert record.apply(op) is applies
        state = ORACLE.get((op, state), state)
        if duplicated:
            assert record.apply(op) is False
        assert record.current.status.value == state
        assert sum(e.status.live for e in record.enrollments) <= 1
    assert record.current.status.value == state
