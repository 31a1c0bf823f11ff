"""trigger-evaluator handlers on the fake store: what one inbound event exits, and why not.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import pytest

from services.trigger_evaluator.domain import EnrollmentStatus, exit_message_id
from services.trigger_evaluator.handlers import TriggerHandlers
from services.trigger_evaluator.triggers import EXIT_RULES
from shared.contracts import decode, topics
from shared.contracts.commands import Exit, ExitReason, ExitSource
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    MessageSent,
    WorkflowApplied,
)
from shared.contracts.inbound import EmailReplied
from shared.uow import UnitOfWork
from tests.support.builders.enrollment_events import (
    ACCOUNT,
    T0,
    completed_from,
    enrolled,
    exited_from,
    paused_from,
    resumed_from,
)
from tests.support.builders.inbound_events import reply
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


def test_every_consumed_type_that_matters_has_a_handler(h: TriggerEvaluator) -> None:
    projection = {
        WorkflowApplied.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentPaused.TYPE,
        EnrollmentResumed.TYPE,
        EnrollmentExited.TYPE,
        EnrollmentCompleted.TYPE,
        MessageSent.TYPE,
        "record.upserted",
        "record.deleted",
        "association.changed",
    }
    assert set(h.handlers) == projection | set(EXIT_RULES)


async def test_an_exit_command_goes_to_the_commands_topic_keyed_by_its_record() -> None:
    store = FakeTriggerEvaluatorStore()
    handlers = TriggerHandlers().handlers()
    alice = enrolled("c-1", email="alice@acme.com")
    setup = UnitOfWork(None, store)
    await handlers[WorkflowApplied.TYPE](setup, [workflow_applied(), alice], T0)
    uow = UnitOfWork(None, store)

    await handlers[EmailReplied.TYPE](uow, [reply(from_address="alice@acme.com")], T0)

    (outgoing,) = uow.outgoing
    assert outgoing.topic == topics.COMMANDS
    command = decode(outgoing.value, topic=topics.COMMANDS)
    assert isinstance(command, Exit)
    assert outgoing.key == command.partition_key()
    assert outgoing.headers["message-type"] == "enrollment.exit"


async def test_a_reply_to_a_sent_workflow_email_issues_one_exit_command(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice, message_sent(alice, "<m-1@offramp.test>"))
    event = reply(in_reply_to="<m-1@offramp.test>")

    outcome = await h.when(event)

    (command,) = exits_of(outcome)
    assert command.payload.enrollment_id == alice.payload.enrollment_id
    assert command.payload.workflow_id == "onboarding"
    assert command.payload.reason is ExitReason.REPLIED
    assert command.payload.source is ExitSource.TRIGGER
    assert command.payload.triggering_event is not None
    assert command.payload.triggering_event.topic == topics.INBOUND_EMAIL
    assert command.causation_id == event.message_id
    ((account, message_id, event_type, decision),) = h.store.decisions
    assert (account, message_id, event_type) == (ACCOUNT, event.message_id, "email.replied")
    assert decision.exit_message_id == command.message_id


async def test_a_redelivered_reply_yields_the_same_command_id(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice)
    event = reply(from_address="alice@acme.com")

    first = exits_of(await h.when(event))
    again = exits_of(await h.when(event))

    assert [c.message_id for c in first] == [c.message_id for c in again]
    assert len(first) == 1


async def test_a_reply_from_an_alias_exits_the_enrolled_contact(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com", aliases=("a.smith@acme.com",))
    await h.given(workflow_applied(), alice)

    outcome = await h.when(reply(from_address="A.Smith@acme.com"))

    (command,) = exits_of(outcome)
    assert command.payload.enrollment_id == alice.payload.enrollment_id


async def test_an_exited_or_completed_enrollment_is_never_exited_again(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    exited = exited_from(alice, steps_completed=1)
    await h.given(workflow_applied(), alice, bob, exited, completed_from(bob), resumed_from(alice))

    outcome = await h.when(reply(from_address="alice@acme.com"))
    outcome_bob = await h.when(reply(from_address="bob@acme.com"))

    assert outcome.published == []
    assert outcome_bob.published == []
    assert [d.why for *_, d in h.store.decisions] == ["the enrollment already ended"] * 2


async def test_a_paused_enrollment_still_exits(h: TriggerEvaluator) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await h.given(workflow_applied(), alice, paused_from(alice))

    outcome = await h.when(reply(from_address="alice@acme.com"))

    assert len(exits_of(outcome)) == 1


async def test_a_reply_takes_the_whole_company_out_when_the_workflow_says_so(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    carol = enrolled("c-3", email="carol@other.com", company_domain="other.com")
    await h.given(workflow_applied(unenroll_company_on_reply=True), alice, bob, carol)

    outcome = await h.when(reply(from_address="alice@acme.com"))

    reasons = {c.payload.record.id: c.payload.reason for c in exits_of(outcome)}
    assert reasons == {"c-1": ExitReason.REPLIED, "c-2": ExitReason.COMPANY_REPLIED}


async def test_a_free_mail_domain_is_never_a_company() -> None:
    handlers = TriggerHandlers(ignored_company_domains=frozenset({"acme.com"})).handlers()
    h = Harness(handlers, FakeTriggerEvaluatorStore, now=T0)
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    await h.given(workflow_applied(unenroll_company_on_reply=True), alice, bob)

    outcome = await h.when(reply(from_address="alice@acme.com"))

    assert [c.payload.record.id for c in exits_of(outcome)] == ["c-1"]


async def test_nothing_crosses_accounts(h: TriggerEvaluator) -> None:
    theirs = enrolled("c-1", email="alice@acme.com", account="another-account")
    await h.given(workflow_applied(account="another-account"), theirs)

    outcome = await h.when(reply(from_address="alice@acme.com"))

    assert outcome.published == []


async def test_two_accounts_with_the_same_ids_stay_apart(h: TriggerEvaluator) -> None:
    """Same enrollment id, workflow id, record id, email, Message-ID and inbound event id."""
    other = "another-account"
    ours = enrolled("c-1", email="alice@acme.com")
    theirs = EnrollmentEnrolled.create(account_id=other, payload=ours.payload)
    await h.given(
        workflow_applied(),
        workflow_applied(account=other),
        ours,
        theirs,
        message_sent(ours, "<m-1@offramp>"),
        message_sent(theirs, "<m-1@offramp>"),
        exited_from(theirs),
    )
    ours_replied = reply(from_address="alice@acme.com", in_reply_to="<m-1@offramp>")
    theirs_replied = EmailReplied.create(
        account_id=other, payload=ours_replied.payload, message_id=ours_replied.message_id
    )

    outcome = await h.when(ours_replied, theirs_replied)

    (command,) = exits_of(outcome)  # theirs had ended: only ours exits
    enrollment_id = ours.payload.enrollment_id
    assert (command.account_id, command.payload.enrollment_id) == (ACCOUNT, enrollment_id)
    assert command.message_id == exit_message_id(ACCOUNT, ours_replied.message_id, enrollment_id)
    assert command.message_id != exit_message_id(other, ours_replied.message_id, enrollment_id)
    assert h.store.enrollments[(ACCOUNT, enrollment_id)].status is EnrollmentStatus.ACTIVE
    assert h.store.enrollments[(other, enrollment_id)].status is EnrollmentStatus.ENDED


async def test_an_unknown_workflow_version_parks_the_event_until_it_is_applied(
    h: TriggerEvaluator,
) -> None:
    # Once the event failed (retried inline, then dead-lettered); now nothing is guessed
    # either, but the event waits without holding the consumer (tests/handler/
    # test_trigger_evaluator_parking.py has the rest).
    alice = enrolled("c-1", email="alice@acme.com", version=2)
    await h.given(workflow_applied(version=1), alice)
    event = reply(from_address="alice@acme.com")

    assert (await h.when(event)).published == []
    assert h.store.decisions == []
    (parked,) = h.store.parked.values()
    assert parked.event == event
    assert "workflow onboarding v2 not projected yet" in parked.why

    (command,) = exits_of(await h.when(workflow_applied(version=2)))
    assert command.causation_id == event.message_id
    assert h.store.parked == {}


async def test_an_exit_seen_before_its_enrollment_keeps_the_enrollment_ended(
    h: TriggerEvaluator,
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    exited = exited_from(alice, reason=ExitReason.HARD_BOUNCED, source=ExitSource.TRIGGER)
    await h.given(workflow_applied(), exited, alice)

    outcome = await h.when(reply(from_address="alice@acme.com"))

    assert outcome.published == []
