"""Any interleaving of duplicated exit, pause, resume and restore commands, and of
workflow pauses and resumes, on the handlers: each run ends the same applied at once and
one by one (the harness), every command is answered, and the record ends in the state
the last applicable command dictates."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.enrollment.domain import Status
from shared.contracts import Message
from shared.contracts.events import EnrollmentEnrolled
from shared.contracts.lifecycle_events import CommandRefused, WorkflowStatus
from tests.support.builders.enrollment_commands import (
    apply_cmd,
    definition,
    enroll_cmd,
    exit_cmd,
    pause_cmd,
    resume_cmd,
)
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.enrollment_setup import EnrollmentHarness, enrollment_harness
from tests.support.builders.lifecycle_commands import (
    pause_wf_cmd,
    restore_cmd,
    resume_wf_cmd,
    sweep_all,
)

pytestmark = pytest.mark.handler

OPS = ("exit", "pause", "resume", "restore", "pause_workflow", "resume_workflow")


def command(op: str, h: EnrollmentHarness) -> Message:
    if op == "exit":
        return exit_cmd()
    if op == "pause":
        return pause_cmd()
    if op == "resume":
        return resume_cmd()
    if op == "pause_workflow":
        return pause_wf_cmd()
    if op == "resume_workflow":
        return resume_wf_cmd()
    # The exit not restored yet (there is one whenever the record is out), else any.
    restored = h.store.lifecycle.restored_as
    exits = [e for e in h.store.enrollments.values() if e.status is Status.EXITED]
    fresh = [e for e in exits if (e.account_id, e.enrollment_id) not in restored]
    target = (fresh or exits or list(h.store.enrollments.values()))[0]
    return restore_cmd(target.enrollment_id)


def expected(op: str, state: str, workflow: WorkflowStatus) -> tuple[str, WorkflowStatus]:
    """The model: what ``op`` makes of the record's state and the workflow's status."""
    if op == "pause_workflow" and workflow is WorkflowStatus.RUNNING:
        return ("exited" if state != "exited" else state), WorkflowStatus.PAUSED
    if op == "resume_workflow" and workflow is WorkflowStatus.PAUSED:
        return state, WorkflowStatus.RUNNING  # nobody comes back
    table = {
        ("exit", "active"): "exited",
        ("exit", "paused"): "exited",
        ("pause", "active"): "paused",
        ("resume", "paused"): "active",
    }
    if op == "restore" and state == "exited" and workflow is WorkflowStatus.RUNNING:
        return "active", workflow
    return table.get((op, state), state), workflow


async def play(ops: list[tuple[str, bool]]) -> None:
    h = enrollment_harness()
    await h.given(apply_cmd(definition(1, 24, 48)))
    assert (await h.when(enroll_cmd())).of_type(EnrollmentEnrolled)
    state, workflow = "active", WorkflowStatus.RUNNING
    for op, duplicated in ops:
        h.now += timedelta(minutes=1)  # time moves on between commands, as it does
        message = command(op, h)
        outcome = await h.when(*([message, message] if duplicated else [message]))
        await sweep_all(h)
        state, workflow = expected(op, state, workflow)
        live = [e.status.value for e in h.store.enrollments.values() if e.status.live]
        assert live == ([] if state == "exited" else [state]), (op, outcome.published)
        if duplicated:  # the repeat changes nothing and says why
            assert outcome.of_type(CommandRefused)
        assert all(m.causation_id == message.message_id for m in outcome.published)
    assert all(e.account_id == ACCOUNT for e in h.store.enrollments.values())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.booleans()), max_size=8))
def test_any_interleaving_of_commands_ends_as_the_last_applicable_one_dictates(
    ops: list[tuple[str, bool]],
) -> None:
    asyncio.run(play(ops))
