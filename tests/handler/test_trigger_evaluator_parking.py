"""trigger-evaluator on the fake store: events that arrive before what they concern wait.

An inbound event that matched no enrollment (or one of a workflow version not projected
yet) is parked, evaluated again when the projection brings its enrollment, sent email or
workflow version, and released (decided as matching nothing, dead-lettered) once it has
waited too long. Every case runs on the harness, as one batch and message by message.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.trigger_evaluator.handlers import TriggerHandlers
from services.trigger_evaluator.parking import DEAD_LETTER_KIND, RECHECK_AFTER, ParkedEvent
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from shared.contracts import decode, topics
from shared.contracts.commands import Exit, ExitReason
from shared.contracts.events import DeadLettered
from shared.contracts.workflow import ExitTrigger
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_events import ACCOUNT, T0, enrolled, exited_from
from tests.support.builders.inbound_events import reply
from tests.support.builders.trigger_projection import message_sent, workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore
from tests.support.harness import Harness, Outcome

pytestmark = pytest.mark.handler

PARK_MAX = timedelta(seconds=30)
HANDLERS = TriggerHandlers(park_max=PARK_MAX, topic_namespace="ns-")

TriggerEvaluator = Harness[FakeTriggerEvaluatorStore]


@pytest.fixture
def h() -> TriggerEvaluator:
    return Harness(HANDLERS.handlers(), FakeTriggerEvaluatorStore, now=T0)


def exits_of(outcome: Outcome) -> list[Exit]:
    assert all(isinstance(m, Exit) for m in outcome.published), outcome.published
    return outcome.of_type(Exit)


def parked(h: TriggerEvaluator) -> list[ParkedEvent]:
    return list(h.store.parked.values())


async def check(h: TriggerEvaluator, after: timedelta) -> tuple[list[ParkedEvent], Outcome]:
    """One round of the parking loop, ``after`` the cases' clock."""

    async def round_(uow: UnitOfWork[TriggerEvaluatorStore]) -> list[ParkedEvent]:
        _, released = await HANDLERS.check_parked(uow, T0 + after, limit=100)
        return released

    return await h.step(round_)


async def test_a_reply_before_its_enrollment_waits_and_exits_once_the_enrollment_arrives(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", occurred_at=T0 - timedelta(seconds=1))
    await h.given(workflow_applied())
    early = reply(from_address="alice@acme.com")

    assert (await h.when(early)).published == []
    assert [p.event for p in parked(h)] == [early]
    assert h.store.decisions == []  # nothing decided while it waits

    (command,) = exits_of(await h.when(alice))

    assert command.payload.enrollment_id == alice.payload.enrollment_id
    assert command.payload.reason is ExitReason.REPLIED
    assert command.causation_id == early.message_id
    assert parked(h) == []
    ((*_, decision),) = h.store.decisions
    assert decision.why == "replied (matched by address)"


async def test_a_reply_matched_by_its_thread_only_exits_once_the_sent_email_arrives(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice)
    # From an address nobody enrolled, quoting an email whose message.sent is not read yet.
    early = reply(from_address="assistant@acme.com", in_reply_to="<m-1@offramp.test>")

    assert (await h.when(early)).published == []
    assert [p.event for p in parked(h)] == [early]

    (command,) = exits_of(await h.when(message_sent(alice, "<m-1@offramp.test>")))

    assert command.payload.enrollment_id == alice.payload.enrollment_id
    assert parked(h) == []


async def test_a_reply_that_occurred_before_the_enrollment_began_does_not_exit_it(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", occurred_at=T0 + timedelta(minutes=5))
    await h.given(workflow_applied(), alice)

    outcome = await h.when(reply(from_address="alice@acme.com"))

    assert outcome.published == []
    assert parked(h) == []  # decided: an enrollment was found, it is just newer
    ((*_, decision),) = h.store.decisions
    assert decision.enrollment is not None
    assert decision.why == (
        "the event occurred at 2026-03-02T09:30:00+00:00, before the enrollment began at "
        "2026-03-02T09:35:00+00:00"
    )


async def test_a_reply_a_little_before_the_enrollment_by_the_clocks_still_exits(
    h: TriggerEvaluator,
) -> None:
    # Within OFFRAMP_EVENT_CLOCK_SKEW_S (60 s by default): clocks disagree that much.
    alice = enrolled("c-1", email="alice@acme.com", occurred_at=T0 + timedelta(seconds=59))
    await h.given(workflow_applied(), alice)

    assert len(exits_of(await h.when(reply(from_address="alice@acme.com")))) == 1


async def test_an_early_reply_older_than_the_enrollment_that_arrives_is_ignored_with_why(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", occurred_at=T0 + timedelta(hours=1))
    await h.given(workflow_applied())
    await h.when(reply(from_address="alice@acme.com"))

    assert (await h.when(alice)).published == []

    assert parked(h) == []
    ((*_, decision),) = h.store.decisions
    assert decision.why.startswith("the event occurred at 2026-03-02T09:30:00+00:00, before")


async def test_an_event_no_workflow_of_the_account_exits_on_is_decided_at_once(
    h: TriggerEvaluator,
) -> None:
    await h.given(workflow_applied(triggers=frozenset({ExitTrigger.LINK_CLICKED})))

    await h.when(reply(from_address="nobody@acme.com"))

    assert parked(h) == []
    ((*_, decision),) = h.store.decisions
    assert decision.why == "no enrollment of the account matched the event"


async def test_an_enrollment_whose_workflow_does_not_exit_on_the_event_decides_it_at_once(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(triggers=frozenset({ExitTrigger.LINK_CLICKED})), alice)

    await h.when(reply(from_address="alice@acme.com"))

    assert parked(h) == []
    ((*_, decision),) = h.store.decisions
    assert decision.why == "trigger replied is off in workflow onboarding v1"


async def test_an_early_reply_then_waits_for_the_workflow_version_of_its_enrollment(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", version=2)
    await h.given(workflow_applied(version=1))
    early = reply(from_address="alice@acme.com")
    await h.when(early)

    assert (await h.when(alice)).published == []
    (waiting,) = parked(h)
    assert waiting.keys == (f"{ACCOUNT}|workflow|onboarding/2",)
    assert waiting.why == "workflow onboarding v2 not projected yet"

    (command,) = exits_of(await h.when(workflow_applied(version=2)))
    assert command.causation_id == early.message_id
    assert parked(h) == []


async def test_a_duplicated_or_replayed_early_reply_still_exits_once(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied())
    early = reply(from_address="alice@acme.com")

    await h.when(early, early)
    await h.when(early)
    assert len(parked(h)) == 1
    first = exits_of(await h.when(alice))
    again = exits_of(await h.when(early))  # replayed after the exit: the same command

    assert len(first) == 1
    assert [c.message_id for c in again] == [c.message_id for c in first]
    assert len(h.store.decisions) == 1


async def test_another_accounts_enrollment_never_unblocks_a_parked_event(
    h: TriggerEvaluator,
) -> None:
    theirs = enrolled("c-1", email="alice@acme.com", account="another-account")
    await h.given(workflow_applied(), workflow_applied(account="another-account"))
    await h.when(reply(from_address="alice@acme.com"))

    assert (await h.when(theirs)).published == []
    assert len(parked(h)) == 1


async def test_a_parked_event_is_checked_once_more_after_a_few_seconds(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied())
    early = reply(from_address="alice@acme.com")
    await h.when(early)
    # Another replica projected the enrollment in a transaction the parking could not see.
    await h.step(lambda uow: uow.store.save_enrollment_events([alice]))

    released, _ = await check(h, RECHECK_AFTER - timedelta(seconds=1))
    assert released == []
    assert len(parked(h)) == 1  # not due yet
    released, outcome = await check(h, RECHECK_AFTER)

    assert released == []
    (command,) = exits_of(outcome)
    assert command.causation_id == early.message_id
    assert parked(h) == []


async def test_a_parked_event_still_waiting_at_its_check_waits_until_it_expires(
    h: TriggerEvaluator,
) -> None:
    await h.given(workflow_applied())
    await h.when(reply(from_address="alice@acme.com"))

    released, outcome = await check(h, RECHECK_AFTER)

    assert (released, outcome.published) == ([], [])
    (waiting,) = parked(h)
    assert waiting.check_at == waiting.expires_at == T0 + PARK_MAX


async def test_an_event_that_waited_too_long_is_released_decided_and_dead_lettered(
    h: TriggerEvaluator,
) -> None:
    await h.given(workflow_applied())
    early = reply(from_address="alice@acme.com")
    await h.when(early)

    released, outcome = await check(h, PARK_MAX)

    assert [p.event for p in released] == [early]
    assert parked(h) == []
    why = "released after waiting 30 s: no enrollment of the account matched the event yet"
    ((*_, decision),) = h.store.decisions
    assert (decision.enrollment, decision.why) == (None, why)
    (dead,) = outcome.of_type(DeadLettered)
    assert dead.payload.error_kind == DEAD_LETTER_KIND == "parking_expired"
    assert dead.payload.reason == why
    assert dead.payload.consumer == "offramp-trigger-evaluator"
    assert dead.payload.source_topic == "ns-" + topics.INBOUND_EMAIL
    assert (dead.payload.source_partition, dead.payload.source_offset) == (-1, -1)
    assert dead.payload.source_key == early.partition_key()
    assert dead.payload.message_id == early.message_id
    assert decode(dead.payload.original_value.encode(), topic=topics.INBOUND_EMAIL) == early


async def test_an_event_waiting_for_a_workflow_version_is_released_with_that_reason(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", version=2)
    await h.given(workflow_applied(version=1), alice)
    await h.when(reply(from_address="alice@acme.com"))

    _, outcome = await check(h, PARK_MAX)

    (dead,) = outcome.of_type(DeadLettered)
    assert dead.payload.reason == (
        "released after waiting 30 s: workflow onboarding v2 not projected yet"
    )


async def test_an_enrollment_that_ended_before_the_early_reply_was_unblocked_is_not_exited(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied())
    await h.when(reply(from_address="alice@acme.com"))
    await h.step(lambda uow: uow.store.save_enrollment_events([alice, exited_from(alice)]))

    _, outcome = await check(h, RECHECK_AFTER)

    assert outcome.published == []
    assert parked(h) == []
    ((*_, decision),) = h.store.decisions
    assert decision.why == "the enrollment already ended"
