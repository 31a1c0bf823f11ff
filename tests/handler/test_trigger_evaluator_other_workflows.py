"""trigger-evaluator handlers on the fake store: a workflow that exits a record from other
named workflows when the record enters it (or leaves it), with that reason.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from typing import Any

import pytest

from services.trigger_evaluator.handlers import TriggerHandlers
from shared.contracts.commands import Exit, ExitReason
from shared.contracts.workflow import ExitTrigger
from tests.support.builders.enrollment_events import T0, enrolled, exited_from
from tests.support.builders.trigger_projection import workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore
from tests.support.harness import Harness

pytestmark = pytest.mark.handler

TriggerEvaluator = Harness[FakeTriggerEvaluatorStore]
EXITABLE = frozenset({ExitTrigger.UNENROLLED_BY_OTHER_WORKFLOW})


@pytest.fixture
def h() -> TriggerEvaluator:
    return Harness(TriggerHandlers().handlers(), FakeTriggerEvaluatorStore, now=T0)


def in_workflow(workflow_id: str, record_id: str = "c-1") -> Any:
    return enrolled(record_id, email=f"{record_id}@acme.com", workflow_id=workflow_id)


def exits(outcome: Any) -> list[tuple[str, str, ExitReason]]:
    return sorted(
        (c.payload.record.id, c.payload.workflow_id or "", c.payload.reason)
        for c in outcome.of_type(Exit)
    )


@pytest.mark.parametrize(
    ("target_triggers", "named", "expected"),
    [
        (EXITABLE, ("nurture",), [("c-1", "nurture", ExitReason.UNENROLLED_BY_OTHER_WORKFLOW)]),
        (EXITABLE, ("other",), []),  # not named
        (frozenset(), ("nurture",), []),  # named, but it did not turn the trigger on
    ],
)
async def test_entering_a_workflow_exits_the_record_from_the_workflows_it_names(
    h: TriggerEvaluator,
    target_triggers: frozenset[ExitTrigger],
    named: tuple[str, ...],
    expected: list[tuple[str, str, ExitReason]],
) -> None:
    await h.given(
        workflow_applied(workflow_id="nurture", triggers=target_triggers),
        workflow_applied(
            workflow_id="sales", triggers=frozenset(), exits_workflows_on_enroll=named
        ),
        in_workflow("nurture"),
        in_workflow("nurture", "c-2"),  # another record: never touched
    )

    outcome = await h.when(in_workflow("sales"))

    assert exits(outcome) == expected


async def test_leaving_a_workflow_exits_the_record_from_the_workflows_it_names(
    h: TriggerEvaluator,
) -> None:
    sales = in_workflow("sales")
    await h.given(
        workflow_applied(workflow_id="nurture", triggers=EXITABLE),
        workflow_applied(
            workflow_id="sales", triggers=frozenset(), exits_workflows_on_exit=("nurture",)
        ),
        in_workflow("nurture"),
        sales,
    )

    outcome = await h.when(exited_from(sales))

    assert exits(outcome) == [("c-1", "nurture", ExitReason.UNENROLLED_BY_OTHER_WORKFLOW)]
    (command,) = outcome.of_type(Exit)
    assert command.payload.triggering_event is not None
    assert command.payload.triggering_event.type == "enrollment.exited"


async def test_an_entering_enrollment_of_a_version_not_read_yet_waits_for_it(
    h: TriggerEvaluator,
) -> None:
    await h.given(
        workflow_applied(workflow_id="nurture", triggers=EXITABLE), in_workflow("nurture")
    )

    early = await h.when(in_workflow("sales"))
    late = await h.when(
        workflow_applied(
            workflow_id="sales", triggers=frozenset(), exits_workflows_on_enroll=("nurture",)
        )
    )

    assert exits(early) == []
    assert exits(late) == [("c-1", "nurture", ExitReason.UNENROLLED_BY_OTHER_WORKFLOW)]


async def test_a_record_in_no_other_workflow_costs_no_wait(h: TriggerEvaluator) -> None:
    outcome = await h.when(in_workflow("sales"))  # its version is not known either

    assert outcome.published == []
    assert h.store.parked == {}
    assert h.store.decisions == []
