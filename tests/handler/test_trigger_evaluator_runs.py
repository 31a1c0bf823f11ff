"""trigger-evaluator handlers on the fake store: runs of messages, as the pipeline hands them.

Each subscriber takes a run of consecutive messages at once and costs a fixed number of
store calls; the harness checks every run leaves what its messages one by one leave.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.trigger_evaluator.domain import EnrollmentStatus, MatchKind
from services.trigger_evaluator.handlers import TriggerHandlers
from services.trigger_evaluator.triggers import EXIT_RULES
from shared.contracts import Message
from shared.contracts.commands import Exit, ExitReason, Pause
from shared.contracts.events import EnrollmentEnrolled, WorkflowApplied
from shared.contracts.inbound import BounceKind
from shared.contracts.workflow import ExitTrigger
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_events import (
    T0,
    enrolled,
    exited_from,
    paused_from,
    resumed_from,
)
from tests.support.builders.inbound_events import bounce, click, reply
from tests.support.builders.trigger_projection import message_sent, workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore
from tests.support.harness import Harness, Outcome

pytestmark = pytest.mark.handler

TriggerEvaluator = Harness[FakeTriggerEvaluatorStore]


@pytest.fixture
def h() -> TriggerEvaluator:
    return Harness(TriggerHandlers().handlers(), FakeTriggerEvaluatorStore, now=T0)


def exits_of(outcome: Outcome) -> list[Exit]:
    assert all(isinstance(m, Exit) for m in outcome.published), outcome.published
    return outcome.of_type(Exit)


def test_one_handler_takes_every_inbound_type_and_one_every_projection_type(
    h: TriggerEvaluator,
) -> None:
    handlers = h.handlers
    inbound = {handlers[t] for t in EXIT_RULES}
    projection = {handlers[t] for t in handlers if t not in EXIT_RULES}
    # The pipeline keeps consecutive messages in one run while their handler is the same.
    assert len(inbound) == 1
    assert len(projection) == 1
    assert inbound != projection


async def test_a_reply_and_a_click_of_one_contact_in_one_run_each_decide_and_exit(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    triggers = frozenset({ExitTrigger.REPLIED, ExitTrigger.LINK_CLICKED})
    await h.given(workflow_applied(triggers=triggers), alice, message_sent(alice, "<m-1@o>"))
    answer = reply(from_address="alice@acme.com")
    clicked = click(from_address="alice@acme.com", workflow_message_id="<m-1@o>")

    outcome = await h.when(answer, clicked)

    # Each event exits with its own derived id; enrollment applies the first, drops the rest.
    commands = exits_of(outcome)
    assert [(c.causation_id, c.payload.reason) for c in commands] == [
        (answer.message_id, ExitReason.REPLIED),
        (clicked.message_id, ExitReason.LINK_CLICKED),
    ]
    assert {c.payload.enrollment_id for c in commands} == {alice.payload.enrollment_id}
    assert commands[0].message_id != commands[1].message_id
    assert [(m, d.matched_by) for _, m, _, d in h.store.decisions] == [
        (answer.message_id, MatchKind.ADDRESS),
        (clicked.message_id, MatchKind.THREAD),
    ]


async def test_a_run_decides_like_its_events_one_by_one(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    carol = enrolled("c-3", email="carol@other.com", company_domain="other.com")
    theirs = enrolled("c-9", email="dave@acme.com", account="another-account")
    await h.given(
        workflow_applied(unenroll_company_on_reply=True),
        workflow_applied(account="another-account"),
        alice,
        bob,
        carol,
        theirs,
    )

    # The harness applies the run at once and its events one by one, and compares.
    outcome = await h.when(
        reply(from_address="dave@acme.com"),  # only the other account's Dave has it
        reply(from_address="alice@acme.com", auto_reply=True),
        reply(from_address="carol@other.com"),
        click(from_address="bob@acme.com"),  # outside a workflow email
        reply(from_address="alice@acme.com"),
    )

    assert [c.payload.record.id for c in outcome.of_type(Exit)] == ["c-3", "c-1", "c-2"]
    # Alice's automatic reply pauses her enrollment; her real reply still exits it.
    assert [p.payload.record.id for p in outcome.of_type(Pause)] == ["c-1"]
    # Dave's reply matched nothing of this account, whose workflow exits on replies: it
    # waits for his enrollment (parked) instead of being decided (it was the sixth).
    assert len(h.store.decisions) == 5
    assert [p.event.payload.from_address for p in h.store.parked.values()] == ["dave@acme.com"]


async def test_a_run_of_inbound_events_costs_three_store_calls_however_long(
    h: TriggerEvaluator,
) -> None:
    people = [enrolled(f"c-{i}", email=f"p{i}@acme.com") for i in range(50)]
    await h.given(workflow_applied(unenroll_company_on_reply=True), *people)
    h.store.calls.clear()

    outcome = await h.when(*(reply(from_address=f"p{i}@acme.com") for i in range(50)))

    assert h.store.calls == ["candidates", "live_by_company", "save_decisions"]
    assert len(exits_of(outcome)) == 50 * 50  # each reply takes the whole company out


async def test_events_that_can_never_exit_look_nothing_up(h: TriggerEvaluator) -> None:
    await h.when(bounce(BounceKind.SOFT), click())

    assert h.store.calls == ["save_decisions"]
    assert len(h.store.decisions) == 2


async def test_an_unknown_workflow_version_parks_only_its_event_and_the_run_goes_on(
    h: TriggerEvaluator,
) -> None:
    # Once this failed the whole run, then the event alone, retried inline: now the run
    # applies at once and only Bob's reply waits for his workflow version.
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@bob.org", company_domain="bob.org", version=2)
    await h.given(workflow_applied(version=1), alice, bob)
    for_alice, for_bob = reply(from_address="alice@acme.com"), reply(from_address="bob@bob.org")

    outcome = await h.when(for_alice, for_bob)

    assert [c.causation_id for c in exits_of(outcome)] == [for_alice.message_id]
    assert [p.event.message_id for p in h.store.parked.values()] == [for_bob.message_id]
    assert h.store.calls[-3:] == ["live_by_company", "park", "save_decisions"]


Lifecycle = Callable[[EnrollmentEnrolled], list[Message]]


@pytest.mark.parametrize(
    "lifecycle",
    [
        pytest.param(lambda e: [e, exited_from(e)], id="enrolled-then-exited"),
        pytest.param(lambda e: [exited_from(e), e], id="exited-then-enrolled"),
        pytest.param(lambda e: [e, exited_from(e), resumed_from(e)], id="resumed-after-exit"),
    ],
)
async def test_ended_wins_within_one_projection_run(
    h: TriggerEvaluator, lifecycle: Lifecycle
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")

    await h.when(workflow_applied(), *lifecycle(alice), message_sent(alice, "<m-1@o>"))

    view = h.store.enrollments[(alice.account_id, alice.payload.enrollment_id)]
    assert view.status is EnrollmentStatus.ENDED
    assert view.email == "alice@acme.com"
    # One statement per table, one lookup of the record's other enrollments (a workflow
    # may name others to exit) and one probe for parked events the run may unblock.
    assert h.store.calls == [
        "save_workflow_versions",
        "save_enrollment_events",
        "save_sent_messages",
        "candidates",
        "parked_for",
    ]
    assert exits_of(await h.when(reply(in_reply_to="<m-1@o>"))) == []


async def test_a_projection_run_keeps_each_enrollments_last_status(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")

    await h.when(alice, bob, paused_from(alice), paused_from(bob), resumed_from(alice))

    statuses = {v.record.id: v.status for v in h.store.enrollments.values()}
    assert statuses == {"c-1": EnrollmentStatus.ACTIVE, "c-2": EnrollmentStatus.PAUSED}


async def test_the_projection_refuses_a_type_it_does_not_keep(h: TriggerEvaluator) -> None:
    uow = UnitOfWork(None, FakeTriggerEvaluatorStore())

    with pytest.raises(TypeError, match=r"email\.replied"):
        await h.handlers[WorkflowApplied.TYPE](uow, [reply()], T0)
