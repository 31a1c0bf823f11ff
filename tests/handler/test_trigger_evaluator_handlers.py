"""trigger-evaluator handlers against an in-memory repository: projection in, exits out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import pytest

from services.trigger_evaluator.domain import (
    STATUS_AFTER_EVENT,
    Candidate,
    Decision,
    EnrollmentStatus,
    EnrollmentView,
    MatchKind,
    WorkflowTriggers,
    WorkflowVersionUnknownError,
    company_domain_key,
    exit_message_id,
)
from services.trigger_evaluator.handlers import build_handlers
from services.trigger_evaluator.projection import EnrollmentEvent
from services.trigger_evaluator.repository import CompanySearch, DecidedEvent, TriggerRepository
from services.trigger_evaluator.triggers import EXIT_RULES, Lookup, Signal, normalize_message_id
from shared.consumer import Batched
from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType, decode, topics
from shared.contracts.commands import ContactDetails, Exit, ExitReason, ExitSource
from shared.contracts.events import (
    CompletedPayload,
    EnrolledPayload,
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentRef,
    EnrollmentResumed,
    ExitedPayload,
    MessageSent,
    MessageSentPayload,
    PausedPayload,
    ResumedPayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import (
    Channel,
    EmailLinkClicked,
    EmailLinkClickedPayload,
    EmailReplied,
    EmailRepliedPayload,
)
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from shared.uow import UnitOfWork

pytestmark = pytest.mark.handler

ACCOUNT = "acme-account"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
USER = Actor(kind=ActorKind.USER, id="u-1")


class Apply(Protocol):
    async def __call__(
        self, handlers: Mapping[str, Batched], *events: Message
    ) -> UnitOfWork[Any]: ...


@dataclass
class FakeRepository:
    """The ``TriggerRepository`` port in memory, with the SQL's semantics.

    Runs are applied one message at a time: the plain sequential behaviour the real
    repository's batch statements must reproduce (the integration tier checks they do).
    """

    workflows: dict[tuple[str, str, int], WorkflowTriggers] = field(default_factory=dict)
    enrollments: dict[tuple[str, uuid.UUID], EnrollmentView] = field(default_factory=dict)
    """(account, enrollment id) -> view: another account's same id is another enrollment."""
    sent: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    decisions: list[tuple[str, uuid.UUID, str, Decision]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    """The port methods called, in order: a handler must cost a constant number per run."""

    async def save_workflow_versions(self, applied: Sequence[WorkflowApplied]) -> None:
        self.calls.append("save_workflow_versions")
        for event in applied:
            definition = event.payload.definition
            settings = definition.settings
            self.workflows.setdefault(
                (event.account_id, definition.workflow_id, event.payload.version),
                WorkflowTriggers(settings.exit_triggers, settings.unenroll_company_on_reply),
            )

    async def save_enrollment_events(self, events: Sequence[EnrollmentEvent]) -> None:
        self.calls.append("save_enrollment_events")
        for event in events:
            if isinstance(event, EnrollmentEnrolled):
                self._enrolled(event.account_id, event.payload)
            else:
                self._set_status(event.account_id, event.payload, STATUS_AFTER_EVENT[event.type])

    def _enrolled(self, account_id: str, enrolled: EnrolledPayload) -> None:
        contact = enrolled.contact or ContactDetails()
        key = (account_id, enrolled.enrollment_id)
        known = self.enrollments.get(key)
        self.enrollments[key] = EnrollmentView(
            enrollment_id=enrolled.enrollment_id,
            account_id=account_id,
            workflow_id=known.workflow_id if known else enrolled.workflow_id,
            workflow_version=known.workflow_version if known else enrolled.workflow_version,
            record=known.record if known else enrolled.record,
            status=known.status if known else EnrollmentStatus.ACTIVE,
            workflow=None,
            email=contact.email,
            aliases=contact.aliases,
            company_domain=company_domain_key(contact.company_domain),
            enrolled_by_user_id=enrolled.actor.id
            if enrolled.actor.kind is ActorKind.USER
            else None,
        )

    def _set_status(self, account_id: str, ref: EnrollmentRef, status: EnrollmentStatus) -> None:
        key = (account_id, ref.enrollment_id)
        known = self.enrollments.get(key)
        if known is None:  # a lifecycle event ahead of enrolled: remembered all the same
            self.enrollments[key] = EnrollmentView(
                enrollment_id=ref.enrollment_id,
                account_id=account_id,
                workflow_id=ref.workflow_id,
                workflow_version=ref.workflow_version,
                record=ref.record,
                status=status,
                workflow=None,
            )
        elif known.status is not EnrollmentStatus.ENDED:
            self.enrollments[key] = replace(known, status=status)

    async def save_sent_messages(self, sent: Sequence[MessageSent]) -> None:
        self.calls.append("save_sent_messages")
        for event in sent:
            message_id = normalize_message_id(event.payload.provider_message_id)
            assert message_id is not None
            self.sent.setdefault((event.account_id, message_id), event.payload.enrollment_id)

    def _views(self, account_id: str, keep: Any) -> list[EnrollmentView]:
        return [
            replace(
                e, workflow=self.workflows.get((e.account_id, e.workflow_id, e.workflow_version))
            )
            for e in self.enrollments.values()
            if e.account_id == account_id and keep(e)
        ]

    async def candidates(self, signals: Sequence[Signal]) -> list[list[Candidate]]:
        self.calls.append("candidates")
        return [self._candidates(signal.account_id, signal.lookup) for signal in signals]

    def _candidates(self, account_id: str, lookup: Lookup) -> list[Candidate]:
        threads = {self.sent.get((account_id, m)) for m in lookup.sent_message_ids}
        addresses = set(lookup.addresses)

        def by_address(e: EnrollmentView) -> bool:
            aliases = set(e.aliases) if lookup.include_aliases else set()
            return bool({e.email, *aliases} & addresses)

        searches = [
            (MatchKind.THREAD, lambda e: e.enrollment_id in threads),
            (MatchKind.RECORD, lambda e: e.record in lookup.records),
            (MatchKind.ATTENDEE, lambda e: e.record in lookup.attendees),
            (MatchKind.ADDRESS, by_address),
        ]
        return [
            Candidate(view, kind)
            for kind, keep in searches
            for view in self._views(account_id, keep)
        ]

    async def live_by_company(
        self, searches: Sequence[CompanySearch]
    ) -> list[list[EnrollmentView]]:
        self.calls.append("live_by_company")
        return [self._colleagues(account_id, domains) for account_id, domains in searches]

    def _colleagues(self, account_id: str, domains: Sequence[str]) -> list[EnrollmentView]:
        return self._views(account_id, lambda e: e.company_domain in domains and e.status.live)

    async def save_decisions(self, decided: Sequence[DecidedEvent]) -> None:
        self.calls.append("save_decisions")
        for signal, decisions in decided:
            self.decisions.extend(
                (signal.account_id, signal.message_id, signal.event_type, d) for d in decisions
            )


def _conforms(repository: FakeRepository) -> TriggerRepository:
    return repository  # mypy checks the fake against the port here


@pytest.fixture
def repository() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def handlers(repository: FakeRepository) -> Mapping[str, Batched]:
    return build_handlers(lambda _conn: _conforms(repository))


def new_uow() -> UnitOfWork[Any]:
    return UnitOfWork(None, None)  # the handlers build their store from the factory


def runs_of(
    handlers: Mapping[str, Batched], events: Sequence[Message]
) -> list[tuple[Batched, list[Message]]]:
    """Consecutive events sharing a handler, grouped into one run, as the pipeline does."""
    runs: list[tuple[Batched, list[Message]]] = []
    for event in events:
        handler = handlers[event.type]
        if runs and runs[-1][0] is handler:
            runs[-1][1].append(event)
        else:
            runs.append((handler, [event]))
    return runs


@pytest.fixture(params=["runs", "alone"])
def apply(request: pytest.FixtureRequest) -> Apply:
    """Hand events to their handlers in one unit of work: grouped into runs as the pipeline
    does, or each alone (how the pipeline re-applies a failed batch). Both must agree."""

    async def apply(handlers: Mapping[str, Batched], *events: Message) -> UnitOfWork[Any]:
        uow = new_uow()
        if request.param == "runs":
            for handler, run in runs_of(handlers, events):
                await handler.handle(uow, run)
        else:
            for event in events:
                await handlers[event.type].handle(uow, [event])
        return uow

    return apply


async def apply_run(handlers: Mapping[str, Batched], *events: Message) -> UnitOfWork[Any]:
    """Hand ``events`` to their (shared) handler as one run."""
    ((handler, run),) = runs_of(handlers, events)
    uow = new_uow()
    await handler.handle(uow, run)
    return uow


def exits_of(uow: UnitOfWork[Any]) -> list[Exit]:
    found = []
    for outgoing in uow.outgoing:
        assert outgoing.topic == topics.COMMANDS
        command = decode(outgoing.value, topic=topics.COMMANDS)
        assert isinstance(command, Exit)
        assert outgoing.key == command.partition_key()
        assert outgoing.headers["message-type"] == "enrollment.exit"
        found.append(command)
    return found


def workflow_applied(
    *,
    workflow_id: str = "onboarding",
    version: int = 1,
    triggers: frozenset[ExitTrigger] = frozenset({ExitTrigger.REPLIED}),
    unenroll_company_on_reply: bool = False,
    account_id: str = ACCOUNT,
) -> WorkflowApplied:
    definition = WorkflowDefinition(
        workflow_id=workflow_id,
        name="Onboarding",
        record_type=RecordType.CONTACT,
        steps=(Step(step_id="hello", body="Hello"),),
        settings=WorkflowSettings(
            exit_triggers=triggers, unenroll_company_on_reply=unenroll_company_on_reply
        ),
    )
    return WorkflowApplied.create(
        account_id=account_id,
        payload=WorkflowAppliedPayload(version=version, definition=definition, actor=USER),
    )


def enrolled(
    record_id: str,
    *,
    email: str,
    company_domain: str = "acme.com",
    aliases: tuple[str, ...] = (),
    version: int = 1,
    account_id: str = ACCOUNT,
) -> EnrollmentEnrolled:
    return EnrollmentEnrolled.create(
        account_id=account_id,
        payload=EnrolledPayload(
            enrollment_id=uuid.uuid4(),
            workflow_id="onboarding",
            workflow_version=version,
            record=RecordRef(type=RecordType.CONTACT, id=record_id),
            contact=ContactDetails(email=email, aliases=aliases, company_domain=company_domain),
            actor=USER,
        ),
    )


def ref_of(event: EnrollmentEnrolled) -> dict[str, Any]:
    p = event.payload
    return {
        "enrollment_id": p.enrollment_id,
        "workflow_id": p.workflow_id,
        "workflow_version": p.workflow_version,
        "record": p.record,
    }


def sent(enrollment: EnrollmentEnrolled, provider_message_id: str) -> MessageSent:
    return MessageSent.create(
        account_id=enrollment.account_id,
        payload=MessageSentPayload(
            **ref_of(enrollment),
            step_index=0,
            step_id="hello",
            channel=Channel.EMAIL,
            provider_message_id=provider_message_id,
            recipient=enrollment.payload.contact.email or "",  # type: ignore[union-attr]
            sent_at=AT,
        ),
    )


def reply(**overrides: Any) -> EmailReplied:
    fields: dict[str, Any] = {
        "from_address": "someone@elsewhere.org",
        "message_header_id": "<reply@mail>",
        **overrides,
    }
    return EmailReplied.create(
        account_id=ACCOUNT, payload=EmailRepliedPayload(**fields), occurred_at=AT
    )


def test_every_consumed_type_that_matters_has_a_handler(
    handlers: Mapping[str, Batched],
) -> None:
    projection = {
        WorkflowApplied.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentPaused.TYPE,
        EnrollmentResumed.TYPE,
        EnrollmentExited.TYPE,
        EnrollmentCompleted.TYPE,
        MessageSent.TYPE,
    }
    assert set(handlers) == projection | set(EXIT_RULES)


async def test_a_reply_to_a_sent_workflow_email_issues_one_exit_command(
    apply: Apply, handlers: Mapping[str, Batched], repository: FakeRepository
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await apply(handlers, workflow_applied(), alice, sent(alice, "<m-1@offramp.test>"))
    event = reply(in_reply_to="<m-1@offramp.test>")

    uow = await apply(handlers, event)

    (command,) = exits_of(uow)
    assert command.payload.enrollment_id == alice.payload.enrollment_id
    assert command.payload.workflow_id == "onboarding"
    assert command.payload.reason is ExitReason.REPLIED
    assert command.payload.source is ExitSource.TRIGGER
    assert command.payload.triggering_event is not None
    assert command.payload.triggering_event.topic == topics.INBOUND_EMAIL
    assert command.causation_id == event.message_id
    ((account, message_id, event_type, decision),) = repository.decisions
    assert (account, message_id, event_type) == (ACCOUNT, event.message_id, "email.replied")
    assert decision.exit_message_id == command.message_id


async def test_a_redelivered_reply_yields_the_same_command_id(
    apply: Apply,
    handlers: Mapping[str, Batched],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await apply(handlers, workflow_applied(), alice)
    event = reply(from_address="alice@acme.com")

    first = exits_of(await apply(handlers, event))
    again = exits_of(await apply(handlers, event))

    assert [c.message_id for c in first] == [c.message_id for c in again]
    assert len(first) == 1


async def test_a_reply_from_an_alias_exits_the_enrolled_contact(
    apply: Apply,
    handlers: Mapping[str, Batched],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", aliases=("a.smith@acme.com",))
    await apply(handlers, workflow_applied(), alice)

    uow = await apply(handlers, reply(from_address="A.Smith@acme.com"))

    (command,) = exits_of(uow)
    assert command.payload.enrollment_id == alice.payload.enrollment_id


async def test_an_automatic_reply_exits_nothing_and_is_recorded(
    apply: Apply, handlers: Mapping[str, Batched], repository: FakeRepository
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await apply(handlers, workflow_applied(), alice)

    uow = await apply(handlers, reply(from_address="alice@acme.com", auto_reply=True))

    assert uow.outgoing == []
    ((*_, decision),) = repository.decisions
    assert "automatic reply" in decision.why


async def test_an_exited_or_completed_enrollment_is_never_exited_again(
    apply: Apply, handlers: Mapping[str, Batched], repository: FakeRepository
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    exited = EnrollmentExited.create(
        account_id=ACCOUNT,
        payload=ExitedPayload(
            **ref_of(alice),
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=USER,
            steps_completed=1,
        ),
    )
    completed = EnrollmentCompleted.create(
        account_id=ACCOUNT, payload=CompletedPayload(**ref_of(bob), steps_completed=1)
    )
    resumed = EnrollmentResumed.create(
        account_id=ACCOUNT, payload=ResumedPayload(**ref_of(alice), actor=USER)
    )
    await apply(handlers, workflow_applied(), alice, bob, exited, completed, resumed)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))
    uow_bob = await apply(handlers, reply(from_address="bob@acme.com"))

    assert uow.outgoing == []
    assert uow_bob.outgoing == []
    assert [d.why for *_, d in repository.decisions] == ["the enrollment already ended"] * 2


async def test_a_paused_enrollment_still_exits(
    apply: Apply, handlers: Mapping[str, Batched]
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    paused = EnrollmentPaused.create(
        account_id=ACCOUNT, payload=PausedPayload(**ref_of(alice), reason="manual", actor=USER)
    )
    await apply(handlers, workflow_applied(), alice, paused)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    assert len(exits_of(uow)) == 1


async def test_a_reply_takes_the_whole_company_out_when_the_workflow_says_so(
    apply: Apply,
    handlers: Mapping[str, Batched],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    carol = enrolled("c-3", email="carol@other.com", company_domain="other.com")
    await apply(handlers, workflow_applied(unenroll_company_on_reply=True), alice, bob, carol)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    reasons = {c.payload.record.id: c.payload.reason for c in exits_of(uow)}
    assert reasons == {"c-1": ExitReason.REPLIED, "c-2": ExitReason.COMPANY_REPLIED}


async def test_a_free_mail_domain_is_never_a_company(
    apply: Apply, repository: FakeRepository
) -> None:
    handlers = build_handlers(
        lambda _conn: repository, ignored_company_domains=frozenset({"acme.com"})
    )
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    await apply(handlers, workflow_applied(unenroll_company_on_reply=True), alice, bob)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    assert [c.payload.record.id for c in exits_of(uow)] == ["c-1"]


async def test_nothing_crosses_accounts(apply: Apply, handlers: Mapping[str, Batched]) -> None:
    theirs = enrolled("c-1", email="alice@acme.com", account_id="another-account")
    await apply(handlers, workflow_applied(account_id="another-account"), theirs)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    assert uow.outgoing == []


async def test_two_accounts_with_the_same_ids_stay_apart(
    apply: Apply, handlers: Mapping[str, Batched], repository: FakeRepository
) -> None:
    """Same enrollment id, workflow id, record id, email, Message-ID and inbound event id."""
    other = "another-account"
    ours = enrolled("c-1", email="alice@acme.com")
    theirs = EnrollmentEnrolled.create(account_id=other, payload=ours.payload)
    await apply(
        handlers,
        workflow_applied(),
        workflow_applied(account_id=other),
        ours,
        theirs,
        sent(ours, "<m-1@offramp>"),
        sent(theirs, "<m-1@offramp>"),
        exited_event(theirs),
    )
    ours_replied = reply(from_address="alice@acme.com", in_reply_to="<m-1@offramp>")
    theirs_replied = EmailReplied.create(
        account_id=other, payload=ours_replied.payload, message_id=ours_replied.message_id
    )

    uow = await apply(handlers, ours_replied, theirs_replied)

    (command,) = exits_of(uow)  # theirs had ended: only ours exits
    enrollment_id = ours.payload.enrollment_id
    assert (command.account_id, command.payload.enrollment_id) == (ACCOUNT, enrollment_id)
    assert command.message_id == exit_message_id(ACCOUNT, ours_replied.message_id, enrollment_id)
    assert command.message_id != exit_message_id(other, ours_replied.message_id, enrollment_id)
    assert repository.enrollments[(ACCOUNT, enrollment_id)].status is EnrollmentStatus.ACTIVE
    assert repository.enrollments[(other, enrollment_id)].status is EnrollmentStatus.ENDED


async def test_an_unknown_workflow_version_fails_the_event_so_it_is_retried(
    apply: Apply,
    handlers: Mapping[str, Batched],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", version=2)
    await apply(handlers, workflow_applied(version=1), alice)

    with pytest.raises(WorkflowVersionUnknownError):
        await apply(handlers, reply(from_address="alice@acme.com"))


async def test_an_exit_seen_before_its_enrollment_keeps_the_enrollment_ended(
    apply: Apply,
    handlers: Mapping[str, Batched],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    exited = EnrollmentExited.create(
        account_id=ACCOUNT,
        payload=ExitedPayload(
            **ref_of(alice),
            reason=ExitReason.HARD_BOUNCED,
            source=ExitSource.TRIGGER,
            actor=USER,
            steps_completed=0,
        ),
    )
    await apply(handlers, workflow_applied(), exited, alice)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    assert uow.outgoing == []


# Runs: the pipeline hands each subscriber a run of consecutive messages at once.


def click(**overrides: Any) -> EmailLinkClicked:
    fields: dict[str, Any] = {
        "from_address": "someone@elsewhere.org",
        "url": "https://x",
        **overrides,
    }
    return EmailLinkClicked.create(
        account_id=ACCOUNT, payload=EmailLinkClickedPayload(**fields), occurred_at=AT
    )


def exited_event(enrollment: EnrollmentEnrolled) -> EnrollmentExited:
    return EnrollmentExited.create(
        account_id=enrollment.account_id,
        payload=ExitedPayload(
            **ref_of(enrollment),
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=USER,
            steps_completed=0,
        ),
    )


def test_one_handler_takes_every_inbound_type_and_one_every_projection_type(
    handlers: Mapping[str, Batched],
) -> None:
    inbound = {handlers[t] for t in EXIT_RULES}
    projection = {handlers[t] for t in handlers if t not in EXIT_RULES}
    # The pipeline keeps consecutive messages in one run while their handler is the same.
    assert len(inbound) == 1
    assert len(projection) == 1
    assert inbound != projection


async def test_a_reply_and_a_click_of_one_contact_in_one_run_each_decide_and_exit(
    handlers: Mapping[str, Batched], repository: FakeRepository, apply: Apply
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    triggers = frozenset({ExitTrigger.REPLIED, ExitTrigger.LINK_CLICKED})
    await apply(handlers, workflow_applied(triggers=triggers), alice, sent(alice, "<m-1@o>"))
    answer = reply(from_address="alice@acme.com")
    clicked = click(from_address="alice@acme.com", workflow_message_id="<m-1@o>")

    uow = await apply_run(handlers, answer, clicked)

    # Each event exits with its own derived id; enrollment applies the first, drops the rest.
    commands = exits_of(uow)
    assert [(c.causation_id, c.payload.reason) for c in commands] == [
        (answer.message_id, ExitReason.REPLIED),
        (clicked.message_id, ExitReason.LINK_CLICKED),
    ]
    assert {c.payload.enrollment_id for c in commands} == {alice.payload.enrollment_id}
    assert commands[0].message_id != commands[1].message_id
    assert [(m, d.matched_by) for _, m, _, d in repository.decisions] == [
        (answer.message_id, MatchKind.ADDRESS),
        (clicked.message_id, MatchKind.THREAD),
    ]


async def test_a_run_decides_like_its_events_one_by_one(
    handlers: Mapping[str, Batched], repository: FakeRepository, apply: Apply
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    carol = enrolled("c-3", email="carol@other.com", company_domain="other.com")
    theirs = enrolled("c-9", email="dave@acme.com", account_id="another-account")
    await apply(
        handlers,
        workflow_applied(unenroll_company_on_reply=True),
        workflow_applied(account_id="another-account"),
        alice,
        bob,
        carol,
        theirs,
    )
    events = [
        reply(from_address="dave@acme.com"),  # only the other account's Dave has it
        reply(from_address="alice@acme.com", auto_reply=True),
        reply(from_address="carol@other.com"),
        click(from_address="bob@acme.com"),  # outside a workflow email
        reply(from_address="alice@acme.com"),
    ]
    one_by_one = [exits_of(await apply_run(handlers, event)) for event in events]
    decided_alone = list(repository.decisions)
    repository.decisions.clear()

    uow = await apply_run(handlers, *events)

    assert [(c.message_id, c.payload) for c in exits_of(uow)] == [
        (c.message_id, c.payload) for commands in one_by_one for c in commands
    ]
    assert repository.decisions == decided_alone
    assert [c.payload.record.id for c in exits_of(uow)] == ["c-3", "c-1", "c-2"]


async def test_a_run_of_inbound_events_costs_three_repository_calls_however_long(
    handlers: Mapping[str, Batched], repository: FakeRepository, apply: Apply
) -> None:
    people = [enrolled(f"c-{i}", email=f"p{i}@acme.com") for i in range(50)]
    await apply(handlers, workflow_applied(unenroll_company_on_reply=True), *people)
    repository.calls.clear()

    uow = await apply_run(handlers, *(reply(from_address=f"p{i}@acme.com") for i in range(50)))

    assert repository.calls == ["candidates", "live_by_company", "save_decisions"]
    assert len(exits_of(uow)) == 50 * 50  # each reply takes the whole company out


async def test_events_that_can_never_exit_look_nothing_up(
    handlers: Mapping[str, Batched], repository: FakeRepository
) -> None:
    await apply_run(handlers, reply(auto_reply=True), click())

    assert repository.calls == ["save_decisions"]
    assert len(repository.decisions) == 2


async def test_an_unknown_workflow_version_fails_the_run_and_only_its_event_alone(
    handlers: Mapping[str, Batched], apply: Apply
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@bob.org", company_domain="bob.org", version=2)
    await apply(handlers, workflow_applied(version=1), alice, bob)
    for_alice, for_bob = reply(from_address="alice@acme.com"), reply(from_address="bob@bob.org")

    with pytest.raises(WorkflowVersionUnknownError):
        await apply_run(handlers, for_alice, for_bob)
    # The pipeline rolls the batch back and re-applies each message alone:
    assert len(exits_of(await apply_run(handlers, for_alice))) == 1
    with pytest.raises(WorkflowVersionUnknownError):
        await apply_run(handlers, for_bob)


@pytest.mark.parametrize(
    "lifecycle",
    [
        pytest.param(lambda e: [e, exited_event(e)], id="enrolled-then-exited"),
        pytest.param(lambda e: [exited_event(e), e], id="exited-then-enrolled"),
        pytest.param(
            lambda e: [
                e,
                exited_event(e),
                EnrollmentResumed.create(
                    account_id=ACCOUNT, payload=ResumedPayload(**ref_of(e), actor=USER)
                ),
            ],
            id="resumed-after-exit",
        ),
    ],
)
async def test_ended_wins_within_one_projection_run(
    handlers: Mapping[str, Batched], repository: FakeRepository, lifecycle: Any
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")

    await apply_run(handlers, workflow_applied(), *lifecycle(alice), sent(alice, "<m-1@o>"))

    view = repository.enrollments[(alice.account_id, alice.payload.enrollment_id)]
    assert view.status is EnrollmentStatus.ENDED
    assert view.email == "alice@acme.com"
    assert repository.calls == [
        "save_workflow_versions",
        "save_enrollment_events",
        "save_sent_messages",
    ]
    assert exits_of(await apply_run(handlers, reply(in_reply_to="<m-1@o>"))) == []


async def test_a_projection_run_keeps_each_enrollments_last_status(
    handlers: Mapping[str, Batched], repository: FakeRepository
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    paused = EnrollmentPaused.create(
        account_id=ACCOUNT, payload=PausedPayload(**ref_of(alice), reason="manual", actor=USER)
    )
    resumed = EnrollmentResumed.create(
        account_id=ACCOUNT, payload=ResumedPayload(**ref_of(alice), actor=USER)
    )
    bob_paused = EnrollmentPaused.create(
        account_id=ACCOUNT, payload=PausedPayload(**ref_of(bob), reason="manual", actor=USER)
    )

    await apply_run(handlers, alice, bob, paused, bob_paused, resumed)

    statuses = {v.record.id: v.status for v in repository.enrollments.values()}
    assert statuses == {"c-1": EnrollmentStatus.ACTIVE, "c-2": EnrollmentStatus.PAUSED}


async def test_the_projection_refuses_a_type_it_does_not_keep(
    handlers: Mapping[str, Batched],
) -> None:
    with pytest.raises(TypeError, match=r"email\.replied"):
        await handlers[WorkflowApplied.TYPE].handle(new_uow(), [reply()])
