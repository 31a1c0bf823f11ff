"""trigger-evaluator handlers against an in-memory repository: projection in, exits out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.trigger_evaluator.domain import (
    Decision,
    EnrollmentStatus,
    EnrollmentView,
    WorkflowTriggers,
    WorkflowVersionUnknownError,
    company_domain_key,
)
from services.trigger_evaluator.handlers import build_handlers
from services.trigger_evaluator.repository import TriggerRepository
from services.trigger_evaluator.triggers import EXIT_RULES, normalize_message_id
from shared.consumer import Handler
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
from shared.contracts.inbound import Channel, EmailReplied, EmailRepliedPayload
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from shared.outbox import UnitOfWork

pytestmark = pytest.mark.handler

ACCOUNT = "acme-account"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
USER = Actor(kind=ActorKind.USER, id="u-1")


@dataclass
class FakeRepository:
    """The ``TriggerRepository`` port in memory, with the SQL's semantics."""

    workflows: dict[tuple[str, str, int], WorkflowTriggers] = field(default_factory=dict)
    enrollments: dict[uuid.UUID, EnrollmentView] = field(default_factory=dict)
    sent: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    decisions: list[tuple[str, uuid.UUID, str, Decision]] = field(default_factory=list)

    async def save_workflow_version(
        self, account_id: str, version: int, definition: WorkflowDefinition
    ) -> None:
        settings = definition.settings
        self.workflows.setdefault(
            (account_id, definition.workflow_id, version),
            WorkflowTriggers(settings.exit_triggers, settings.unenroll_company_on_reply),
        )

    async def save_enrollment(self, account_id: str, enrolled: EnrolledPayload) -> None:
        contact = enrolled.contact or ContactDetails()
        known = self.enrollments.get(enrolled.enrollment_id)
        self.enrollments[enrolled.enrollment_id] = EnrollmentView(
            enrollment_id=enrolled.enrollment_id,
            account_id=account_id,
            workflow_id=enrolled.workflow_id,
            workflow_version=enrolled.workflow_version,
            record=enrolled.record,
            status=known.status if known else EnrollmentStatus.ACTIVE,
            workflow=None,
            email=contact.email,
            aliases=contact.aliases,
            company_domain=company_domain_key(contact.company_domain),
            enrolled_by_user_id=enrolled.actor.id
            if enrolled.actor.kind is ActorKind.USER
            else None,
        )

    async def set_status(
        self, account_id: str, ref: EnrollmentRef, status: EnrollmentStatus
    ) -> None:
        known = self.enrollments.get(ref.enrollment_id)
        if known is None:  # a lifecycle event ahead of enrolled: remembered all the same
            self.enrollments[ref.enrollment_id] = EnrollmentView(
                enrollment_id=ref.enrollment_id,
                account_id=account_id,
                workflow_id=ref.workflow_id,
                workflow_version=ref.workflow_version,
                record=ref.record,
                status=status,
                workflow=None,
            )
        elif known.account_id == account_id and known.status is not EnrollmentStatus.ENDED:
            self.enrollments[ref.enrollment_id] = replace(known, status=status)

    async def save_sent_message(self, account_id: str, sent: MessageSentPayload) -> None:
        message_id = normalize_message_id(sent.provider_message_id)
        assert message_id is not None
        self.sent.setdefault((account_id, message_id), sent.enrollment_id)

    def _views(self, account_id: str, keep: Any) -> list[EnrollmentView]:
        return [
            replace(
                e, workflow=self.workflows.get((e.account_id, e.workflow_id, e.workflow_version))
            )
            for e in self.enrollments.values()
            if e.account_id == account_id and keep(e)
        ]

    async def by_sent_messages(
        self, account_id: str, provider_message_ids: Sequence[str]
    ) -> list[EnrollmentView]:
        ids = {self.sent.get((account_id, m)) for m in provider_message_ids}
        return self._views(account_id, lambda e: e.enrollment_id in ids)

    async def by_records(
        self, account_id: str, records: Sequence[RecordRef]
    ) -> list[EnrollmentView]:
        return self._views(account_id, lambda e: e.record in records)

    async def by_addresses(
        self, account_id: str, addresses: Sequence[str], *, include_aliases: bool
    ) -> list[EnrollmentView]:
        def matches(e: EnrollmentView) -> bool:
            aliases = set(e.aliases) if include_aliases else set()
            return bool({e.email, *aliases} & set(addresses))

        return self._views(account_id, matches)

    async def live_by_company(
        self, account_id: str, company_domains: Sequence[str]
    ) -> list[EnrollmentView]:
        return self._views(
            account_id, lambda e: e.company_domain in company_domains and e.status.live
        )

    async def save_decisions(
        self,
        account_id: str,
        inbound_message_id: uuid.UUID,
        inbound_type: str,
        decisions: Sequence[Decision],
    ) -> None:
        self.decisions.extend((account_id, inbound_message_id, inbound_type, d) for d in decisions)


def _conforms(repository: FakeRepository) -> TriggerRepository:
    return repository  # mypy checks the fake against the port here


@pytest.fixture
def repository() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def handlers(repository: FakeRepository) -> Mapping[str, Handler]:
    return build_handlers(lambda _conn: _conforms(repository))


def new_uow() -> UnitOfWork:
    return UnitOfWork(conn=None)  # type: ignore[arg-type]  # the fake repository needs none


async def apply(handlers: Mapping[str, Handler], *events: Message) -> UnitOfWork:
    """Hand ``events`` to their handlers in one unit of work, as the pipeline does."""
    uow = new_uow()
    for event in events:
        await handlers[event.type](uow, event)
    return uow


def exits_of(uow: UnitOfWork) -> list[Exit]:
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
    handlers: Mapping[str, Handler],
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
    handlers: Mapping[str, Handler], repository: FakeRepository
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
    handlers: Mapping[str, Handler],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await apply(handlers, workflow_applied(), alice)
    event = reply(from_address="alice@acme.com")

    first = exits_of(await apply(handlers, event))
    again = exits_of(await apply(handlers, event))

    assert [c.message_id for c in first] == [c.message_id for c in again]
    assert len(first) == 1


async def test_a_reply_from_an_alias_exits_the_enrolled_contact(
    handlers: Mapping[str, Handler],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", aliases=("a.smith@acme.com",))
    await apply(handlers, workflow_applied(), alice)

    uow = await apply(handlers, reply(from_address="A.Smith@acme.com"))

    (command,) = exits_of(uow)
    assert command.payload.enrollment_id == alice.payload.enrollment_id


async def test_an_automatic_reply_exits_nothing_and_is_recorded(
    handlers: Mapping[str, Handler], repository: FakeRepository
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    await apply(handlers, workflow_applied(), alice)

    uow = await apply(handlers, reply(from_address="alice@acme.com", auto_reply=True))

    assert uow.outgoing == []
    ((*_, decision),) = repository.decisions
    assert "automatic reply" in decision.why


async def test_an_exited_or_completed_enrollment_is_never_exited_again(
    handlers: Mapping[str, Handler], repository: FakeRepository
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


async def test_a_paused_enrollment_still_exits(handlers: Mapping[str, Handler]) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    paused = EnrollmentPaused.create(
        account_id=ACCOUNT, payload=PausedPayload(**ref_of(alice), reason="manual", actor=USER)
    )
    await apply(handlers, workflow_applied(), alice, paused)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    assert len(exits_of(uow)) == 1


async def test_a_reply_takes_the_whole_company_out_when_the_workflow_says_so(
    handlers: Mapping[str, Handler],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    carol = enrolled("c-3", email="carol@other.com", company_domain="other.com")
    await apply(handlers, workflow_applied(unenroll_company_on_reply=True), alice, bob, carol)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    reasons = {c.payload.record.id: c.payload.reason for c in exits_of(uow)}
    assert reasons == {"c-1": ExitReason.REPLIED, "c-2": ExitReason.COMPANY_REPLIED}


async def test_a_free_mail_domain_is_never_a_company(repository: FakeRepository) -> None:
    handlers = build_handlers(
        lambda _conn: repository, ignored_company_domains=frozenset({"acme.com"})
    )
    alice = enrolled("c-1", email="alice@acme.com")
    bob = enrolled("c-2", email="bob@acme.com")
    await apply(handlers, workflow_applied(unenroll_company_on_reply=True), alice, bob)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    assert [c.payload.record.id for c in exits_of(uow)] == ["c-1"]


async def test_nothing_crosses_accounts(handlers: Mapping[str, Handler]) -> None:
    theirs = enrolled("c-1", email="alice@acme.com", account_id="another-account")
    await apply(handlers, workflow_applied(account_id="another-account"), theirs)

    uow = await apply(handlers, reply(from_address="alice@acme.com"))

    assert uow.outgoing == []


async def test_an_unknown_workflow_version_fails_the_event_so_it_is_retried(
    handlers: Mapping[str, Handler],
) -> None:
    alice = enrolled("c-1", email="alice@acme.com", version=2)
    await apply(handlers, workflow_applied(version=1), alice)

    with pytest.raises(WorkflowVersionUnknownError):
        await apply(handlers, reply(from_address="alice@acme.com"))


async def test_an_exit_seen_before_its_enrollment_keeps_the_enrollment_ended(
    handlers: Mapping[str, Handler],
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
