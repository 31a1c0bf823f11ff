"""Enrollment handlers against an in-memory store: commands and sends in, events out."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from services.enrollment import handlers as enrollment_handlers
from services.enrollment.domain import Enrollment, Status, WorkflowVersion
from services.enrollment.handlers import EnrollmentHandlers
from services.enrollment.ports import EnrollmentStore, ExitRecord, HistoryEntry, NewEnrollment
from shared.consumer import Batched, Handler
from shared.contracts import (
    SYSTEM_ACTOR,
    TOPIC_OF_TYPE,
    Actor,
    ActorKind,
    Message,
    RecordRef,
    RecordType,
    decode,
    topics,
)
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
    Exit,
    ExitPayload,
    ExitReason,
    ExitSource,
    Pause,
    PausePayload,
    Resume,
    ResumePayload,
    TriggeringEvent,
)
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentRejected,
    EnrollmentResumed,
    EnrollmentStepCompleted,
    EnrollmentStepScheduled,
    MessageSent,
    MessageSentPayload,
    WorkflowApplied,
)
from shared.contracts.inbound import Channel
from shared.contracts.workflow import Step, WorkflowDefinition, WorkflowSettings
from shared.uow import UnitOfWork

pytestmark = pytest.mark.handler

ACCOUNT = "acme-account"
OTHER_ACCOUNT = "other-account"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ALICE = RecordRef(type=RecordType.CONTACT, id="c-1")
BOB = RecordRef(type=RecordType.CONTACT, id="c-2")
USER = Actor(kind=ActorKind.USER, id="u-1")
HOUR = timedelta(hours=1)
M = TypeVar("M", bound=Message)


def _key(enrollment: Enrollment) -> tuple[str, uuid.UUID]:
    return (enrollment.account_id, enrollment.enrollment_id)


@dataclass
class FakeEnrollmentStore:
    """``EnrollmentStore`` in memory, with the repository's SQL semantics."""

    versions: dict[tuple[str, str, int], tuple[WorkflowVersion, str]] = field(default_factory=dict)
    heads: dict[tuple[str, str], int] = field(default_factory=dict)
    enrollments: dict[tuple[str, uuid.UUID], Enrollment] = field(default_factory=dict)
    exits: dict[tuple[str, uuid.UUID], tuple[ExitSource, Actor, TriggeringEvent | None]] = field(
        default_factory=dict
    )
    history: list[tuple[str, uuid.UUID | None, str]] = field(default_factory=list)

    async def workflow_head(self, account_id: str, workflow_id: str) -> tuple[int, str] | None:
        version = self.heads.get((account_id, workflow_id))
        if version is None:
            return None
        return version, self.versions[(account_id, workflow_id, version)][1]

    async def add_workflow_version(
        self,
        account_id: str,
        definition: WorkflowDefinition,
        *,
        version: int,
        definition_hash: str,
        actor: Actor,
    ) -> None:
        key = (account_id, definition.workflow_id, version)
        assert key not in self.versions, "primary key violation"
        self.versions[key] = (WorkflowVersion(*key, definition), definition_hash)
        self.heads[(account_id, definition.workflow_id)] = version

    def _version(self, key: tuple[str, str, int]) -> WorkflowVersion | None:
        found = self.versions.get(key)
        return None if found is None else found[0]

    async def current_workflows(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], WorkflowVersion]:
        found = {}
        for key in keys:
            version = self.heads.get(key)
            if version is not None and (v := self._version((*key, version))) is not None:
                found[key] = v
        return found

    async def workflow_versions(
        self, keys: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], WorkflowVersion]:
        return {k: v for k in keys if (v := self._version(k)) is not None}

    async def enrollments_in_workflows_for_update(
        self, keys: Sequence[tuple[str, str, RecordRef]]
    ) -> list[Enrollment]:
        wanted = set(keys)
        return sorted(
            (
                e
                for e in self.enrollments.values()
                if (e.account_id, e.workflow_id, e.record) in wanted
            ),
            key=lambda e: e.enrolled_at,
        )

    async def live_enrollments_for_update(
        self, records: Sequence[tuple[str, RecordRef]]
    ) -> list[Enrollment]:
        wanted = set(records)
        return sorted(
            (
                e
                for e in self.enrollments.values()
                if (e.account_id, e.record) in wanted and e.status.live
            ),
            key=lambda e: e.enrolled_at,
        )

    async def enrollments_for_update(
        self, keys: Sequence[tuple[str, uuid.UUID]]
    ) -> list[Enrollment]:
        return [e for key in dict.fromkeys(keys) if (e := self.enrollments.get(key)) is not None]

    async def insert_enrollments(self, new: Sequence[NewEnrollment]) -> None:
        for item in new:
            key = _key(item.enrollment)
            assert key not in self.enrollments, "primary key violation"
            self.enrollments[key] = item.enrollment

    async def save_progress(self, enrollments: Sequence[Enrollment]) -> None:
        for enrollment in enrollments:
            known = self.enrollments[_key(enrollment)]
            self.enrollments[_key(enrollment)] = replace(
                known,
                status=enrollment.status,
                current_step=enrollment.current_step,
                steps_completed=enrollment.steps_completed,
                next_due_at=enrollment.next_due_at,
                ended_at=enrollment.ended_at,
            )

    async def save_exits(self, exits: Sequence[ExitRecord]) -> None:
        for record in exits:
            enrollment = record.enrollment
            known = self.enrollments[_key(enrollment)]
            self.enrollments[_key(enrollment)] = replace(
                known,
                status=Status.EXITED,
                next_due_at=None,
                ended_at=enrollment.ended_at,
                exit_reason=enrollment.exit_reason,
            )
            self.exits[_key(enrollment)] = (
                record.source,
                record.actor,
                record.triggering_event,
            )

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        self.history.extend((h.account_id, h.enrollment_id, h.event_type) for h in entries)


def _conforms(store: FakeEnrollmentStore) -> EnrollmentStore:
    return store  # mypy checks the fake against the port here


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fixed = Clock()
    monkeypatch.setattr(enrollment_handlers, "utc_now", fixed)
    return fixed


@pytest.fixture
def store() -> FakeEnrollmentStore:
    return FakeEnrollmentStore()


@pytest.fixture
def handlers(store: FakeEnrollmentStore, clock: Clock) -> Mapping[str, Handler | Batched]:
    return EnrollmentHandlers(lambda _conn: _conforms(store)).handlers()


async def run(handlers: Mapping[str, Handler | Batched], *messages: Message) -> list[Message]:
    """Hand ``messages`` to their handlers in one unit of work, in runs of one type as the
    pipeline does; decode what it publishes."""
    uow = UnitOfWork(None, None)  # the handlers build their store from the factory
    for _type, group in itertools.groupby(messages, key=lambda m: m.type):
        run_of = list(group)
        handler = handlers[run_of[0].type]
        await handler(uow, run_of, T0)
    published = []
    for outgoing in uow.outgoing:
        decoded = decode(outgoing.value, topic=outgoing.topic)
        assert isinstance(decoded, Message)
        assert outgoing.topic == TOPIC_OF_TYPE[decoded.type]
        assert outgoing.key == decoded.partition_key()
        assert outgoing.headers["message-id"] == str(decoded.message_id)
        published.append(decoded)
    return published


def only(published: list[Message], kind: type[M]) -> M:
    (found,) = [m for m in published if isinstance(m, kind)]
    return found


def definition(
    *delays_h: int, workflow_id: str = "onboarding", **settings: Any
) -> WorkflowDefinition:
    return WorkflowDefinition(
        workflow_id=workflow_id,
        name="Onboarding",
        record_type=RecordType.CONTACT,
        steps=tuple(
            Step(step_id=f"s{i}", body="Hi", delay_seconds=h * 3600)
            for i, h in enumerate(delays_h or (0, 24))
        ),
        settings=WorkflowSettings(**settings),
    )


def apply_cmd(wf: WorkflowDefinition, account_id: str = ACCOUNT) -> ApplyWorkflow:
    return ApplyWorkflow.create(
        account_id=account_id, payload=ApplyWorkflowPayload(actor=USER, definition=wf)
    )


def enroll_cmd(
    record: RecordRef = ALICE,
    workflow_id: str = "onboarding",
    account_id: str = ACCOUNT,
    message_id: uuid.UUID | None = None,
) -> Enroll:
    payload = EnrollPayload(
        workflow_id=workflow_id,
        record=record,
        contact=ContactDetails(email=f"{record.id}@acme.com"),
        actor=USER,
    )
    return Enroll.create(account_id=account_id, payload=payload, message_id=message_id)


def exit_cmd(
    record: RecordRef = ALICE,
    *,
    workflow_id: str | None = "onboarding",
    source: ExitSource = ExitSource.TRIGGER,
    actor: Actor = SYSTEM_ACTOR,
    account_id: str = ACCOUNT,
) -> Exit:
    trigger = TriggeringEvent(
        message_id=uuid.uuid4(), type="email.replied", topic=topics.INBOUND_EMAIL, occurred_at=T0
    )
    payload = ExitPayload(
        record=record,
        workflow_id=workflow_id,
        reason=ExitReason.REPLIED,
        source=source,
        actor=actor,
        triggering_event=trigger,
    )
    return Exit.create(account_id=account_id, payload=payload)


def pause_cmd(record: RecordRef = ALICE, account_id: str = ACCOUNT) -> Pause:
    payload = PausePayload(record=record, until=T0 + timedelta(days=14), reason="ooo", actor=USER)
    return Pause.create(account_id=account_id, payload=payload)


def resume_cmd(record: RecordRef = ALICE, account_id: str = ACCOUNT) -> Resume:
    return Resume.create(account_id=account_id, payload=ResumePayload(record=record, actor=USER))


def sent_evt(
    enrolled: EnrollmentEnrolled, step_index: int, sent_at: datetime, account_id: str = ACCOUNT
) -> MessageSent:
    p = enrolled.payload
    payload = MessageSentPayload(
        enrollment_id=p.enrollment_id,
        workflow_id=p.workflow_id,
        workflow_version=p.workflow_version,
        record=p.record,
        step_index=step_index,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        provider_message_id=f"<m-{step_index}@offramp.test>",
        recipient="c-1@acme.com",
        sent_at=sent_at,
    )
    return MessageSent.create(account_id=account_id, payload=payload)


async def enrolled_in(
    handlers: Mapping[str, Handler | Batched],
    wf: WorkflowDefinition | None = None,
    record: RecordRef = ALICE,
) -> EnrollmentEnrolled:
    wf = wf or definition()
    published = await run(handlers, apply_cmd(wf), enroll_cmd(record, wf.workflow_id))
    return only(published, EnrollmentEnrolled)


def test_enrollment_handles_its_commands_and_sends(
    handlers: Mapping[str, Handler | Batched],
) -> None:
    commands = {ApplyWorkflow.TYPE, Enroll.TYPE, Exit.TYPE, Pause.TYPE, Resume.TYPE}
    assert set(handlers) == commands | {MessageSent.TYPE}


# --- workflows ------------------------------------------------------------------------


async def test_applying_a_new_workflow_publishes_version_one(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    command = apply_cmd(definition())

    (applied,) = await run(handlers, command)

    assert isinstance(applied, WorkflowApplied)
    assert applied.payload.version == 1
    assert applied.payload.definition == definition()
    assert applied.partition_key() == f"{ACCOUNT}/workflow/onboarding"
    assert applied.causation_id == command.message_id
    assert store.heads == {(ACCOUNT, "onboarding"): 1}


async def test_re_applying_the_same_definition_publishes_nothing(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    await run(handlers, apply_cmd(definition()))

    assert await run(handlers, apply_cmd(definition())) == []
    assert list(store.versions) == [(ACCOUNT, "onboarding", 1)]


async def test_a_changed_definition_becomes_the_next_version(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    await run(handlers, apply_cmd(definition(0, 24)))

    (applied,) = await run(handlers, apply_cmd(definition(0, 48)))

    assert isinstance(applied, WorkflowApplied)
    assert applied.payload.version == 2
    current = (await store.current_workflows([(ACCOUNT, "onboarding")]))[(ACCOUNT, "onboarding")]
    assert current.version == 2
    assert current.definition.steps[1].delay_seconds == 48 * 3600


# --- enrollment -----------------------------------------------------------------------


async def test_enrolling_publishes_enrolled_and_schedules_the_first_step(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    await run(handlers, apply_cmd(definition(2, 24)))
    command = enroll_cmd()

    published = await run(handlers, command)

    assert [m.type for m in published] == [EnrollmentEnrolled.TYPE, EnrollmentStepScheduled.TYPE]
    enrolled, scheduled = (
        only(published, EnrollmentEnrolled),
        only(published, EnrollmentStepScheduled),
    )
    assert enrolled.payload.record == ALICE
    assert enrolled.payload.workflow_version == 1
    assert enrolled.payload.contact == ContactDetails(email="c-1@acme.com")
    assert enrolled.causation_id == scheduled.causation_id == command.message_id
    assert scheduled.payload.enrollment_id == enrolled.payload.enrollment_id
    assert (scheduled.payload.step_index, scheduled.payload.step_id) == (0, "s0")
    assert scheduled.payload.due_at == T0 + 2 * HOUR
    saved = store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.current_step, saved.next_due_at) == (
        Status.ACTIVE,
        0,
        T0 + 2 * HOUR,
    )
    assert (ACCOUNT, saved.enrollment_id, EnrollmentEnrolled.TYPE) in store.history


async def test_enrolling_into_an_unknown_workflow_is_rejected(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    (rejected,) = await run(handlers, enroll_cmd(workflow_id="nowhere"))

    assert isinstance(rejected, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["unknown_workflow"]
    assert (rejected.payload.workflow_id, rejected.payload.record) == ("nowhere", ALICE)
    assert store.enrollments == {}
    assert store.history == [(ACCOUNT, None, EnrollmentRejected.TYPE)]


async def test_enrolling_a_record_twice_is_rejected(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    await enrolled_in(handlers)

    (rejected,) = await run(handlers, enroll_cmd())

    assert isinstance(rejected, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["already_enrolled"]
    assert len(store.enrollments) == 1


# --- steps ----------------------------------------------------------------------------


async def test_a_sent_step_completes_it_and_schedules_the_next(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    enrolled = await enrolled_in(handlers, definition(0, 24, 48))
    sent_at = T0 + timedelta(minutes=1)

    published = await run(handlers, sent_evt(enrolled, 0, sent_at))

    assert [m.type for m in published] == [
        EnrollmentStepCompleted.TYPE,
        EnrollmentStepScheduled.TYPE,
    ]
    completed = only(published, EnrollmentStepCompleted)
    assert (completed.payload.step_index, completed.payload.step_id) == (0, "s0")
    assert completed.payload.provider_message_id == "<m-0@offramp.test>"
    scheduled = only(published, EnrollmentStepScheduled)
    assert (scheduled.payload.step_index, scheduled.payload.step_id) == (1, "s1")
    assert scheduled.payload.due_at == sent_at + 24 * HOUR
    saved = store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.current_step, saved.steps_completed) == (1, 1)


async def test_the_last_sent_step_completes_the_enrollment(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    enrolled = await enrolled_in(handlers, definition(0, 24))
    await run(handlers, sent_evt(enrolled, 0, T0))

    published = await run(handlers, sent_evt(enrolled, 1, T0 + 24 * HOUR))

    assert [m.type for m in published] == [EnrollmentStepCompleted.TYPE, EnrollmentCompleted.TYPE]
    assert only(published, EnrollmentCompleted).payload.steps_completed == 2
    saved = store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.ended_at) == (Status.COMPLETED, T0 + 24 * HOUR)


async def test_a_send_of_a_step_already_recorded_changes_nothing(
    handlers: Mapping[str, Handler | Batched],
) -> None:
    enrolled = await enrolled_in(handlers)
    await run(handlers, sent_evt(enrolled, 0, T0))

    assert await run(handlers, sent_evt(enrolled, 0, T0)) == []


# --- exits ----------------------------------------------------------------------------


async def test_an_exit_publishes_one_exited_event_with_its_cause(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    enrolled = await enrolled_in(handlers)
    command = exit_cmd()

    (exited,) = await run(handlers, command)

    assert isinstance(exited, EnrollmentExited)
    assert exited.payload.enrollment_id == enrolled.payload.enrollment_id
    assert exited.payload.reason is ExitReason.REPLIED
    assert exited.payload.source is ExitSource.TRIGGER
    assert exited.payload.actor == SYSTEM_ACTOR
    assert exited.payload.triggering_event == command.payload.triggering_event
    assert exited.payload.steps_completed == 0
    assert exited.causation_id == command.message_id
    saved = store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)]
    assert (saved.status, saved.exit_reason, saved.ended_at) == (
        Status.EXITED,
        ExitReason.REPLIED,
        T0,
    )
    assert store.exits[_key(saved)] == (
        ExitSource.TRIGGER,
        SYSTEM_ACTOR,
        command.payload.triggering_event,
    )


async def test_a_replayed_exit_gets_the_same_event_id_and_a_new_one_changes_nothing(
    clock: Clock,
) -> None:
    setup = (apply_cmd(definition()), enroll_cmd())
    command = exit_cmd()
    first_store, second_store = FakeEnrollmentStore(), FakeEnrollmentStore()
    first = EnrollmentHandlers(lambda _conn: first_store).handlers()
    second = EnrollmentHandlers(lambda _conn: second_store).handlers()
    await run(first, *setup)
    await run(second, *setup)  # the same state again, as after a rolled-back attempt

    once = await run(first, command)
    replayed = await run(second, command)

    assert len(once) == 1
    assert [m.message_id for m in once] == [m.message_id for m in replayed]
    assert await run(first, command) == []
    assert await run(first, exit_cmd()) == []


async def test_an_exit_without_workflow_leaves_every_live_workflow_of_the_record(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    trial = await enrolled_in(handlers, definition(workflow_id="trial"))
    nurture = await enrolled_in(handlers, definition(0, workflow_id="nurture"))
    await run(handlers, sent_evt(nurture, 0, T0))  # completes
    onboarding = await enrolled_in(handlers, definition(workflow_id="onboarding"))
    bobs = await enrolled_in(handlers, definition(workflow_id="onboarding"), record=BOB)

    published = await run(handlers, exit_cmd(workflow_id=None))

    exited = {m.payload.enrollment_id for m in published if isinstance(m, EnrollmentExited)}
    assert exited == {trial.payload.enrollment_id, onboarding.payload.enrollment_id}
    assert len(published) == 2
    assert (
        store.enrollments[(nurture.account_id, nurture.payload.enrollment_id)].status
        is Status.COMPLETED
    )
    assert store.enrollments[(bobs.account_id, bobs.payload.enrollment_id)].status is Status.ACTIVE


async def test_a_workflow_that_agents_may_not_stop_still_exits_on_triggers(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    enrolled = await enrolled_in(handlers, definition(agents_may_stop=False))

    assert await run(handlers, exit_cmd(source=ExitSource.MANUAL, actor=USER)) == []
    assert (
        store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.ACTIVE
    )
    (exited,) = await run(handlers, exit_cmd(source=ExitSource.TRIGGER))
    assert isinstance(exited, EnrollmentExited)


# --- pause and resume -----------------------------------------------------------------


async def test_pausing_publishes_paused(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    enrolled = await enrolled_in(handlers)
    command = pause_cmd()

    (paused,) = await run(handlers, command)

    assert isinstance(paused, EnrollmentPaused)
    assert paused.payload.enrollment_id == enrolled.payload.enrollment_id
    assert (paused.payload.reason, paused.payload.until) == ("ooo", command.payload.until)
    assert (
        store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.PAUSED
    )
    assert await run(handlers, pause_cmd()) == []


@pytest.mark.parametrize(("resumed_after", "due_after"), [(HOUR, 2 * HOUR), (3 * HOUR, 3 * HOUR)])
async def test_resuming_publishes_resumed_and_schedules_the_current_step(
    handlers: Mapping[str, Handler | Batched],
    store: FakeEnrollmentStore,
    clock: Clock,
    resumed_after: timedelta,
    due_after: timedelta,
) -> None:
    enrolled = await enrolled_in(handlers, definition(2, 24))
    await run(handlers, pause_cmd())
    clock.now = T0 + resumed_after

    published = await run(handlers, resume_cmd())

    assert [m.type for m in published] == [EnrollmentResumed.TYPE, EnrollmentStepScheduled.TYPE]
    scheduled = only(published, EnrollmentStepScheduled)
    assert scheduled.payload.enrollment_id == enrolled.payload.enrollment_id
    assert (scheduled.payload.step_index, scheduled.payload.due_at) == (0, T0 + due_after)
    assert (
        store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.ACTIVE
    )
    assert await run(handlers, resume_cmd()) == []


async def test_a_step_sent_while_paused_is_recorded_and_the_next_waits_for_resume(
    handlers: Mapping[str, Handler | Batched], clock: Clock
) -> None:
    enrolled = await enrolled_in(handlers, definition(0, 24, 48))
    await run(handlers, pause_cmd())

    published = await run(handlers, sent_evt(enrolled, 0, T0))
    clock.now = T0 + HOUR
    resumed = await run(handlers, resume_cmd())

    assert [m.type for m in published] == [EnrollmentStepCompleted.TYPE]
    scheduled = only(resumed, EnrollmentStepScheduled)
    assert (scheduled.payload.step_index, scheduled.payload.due_at) == (1, T0 + 24 * HOUR)


# --- accounts -------------------------------------------------------------------------


async def test_nothing_crosses_accounts(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    enrolled = await enrolled_in(handlers)
    before = dict(store.enrollments)
    history = len(store.history)

    for command in (
        exit_cmd(account_id=OTHER_ACCOUNT),
        exit_cmd(workflow_id=None, account_id=OTHER_ACCOUNT),
        pause_cmd(account_id=OTHER_ACCOUNT),
        resume_cmd(account_id=OTHER_ACCOUNT),
        sent_evt(enrolled, 0, T0, account_id=OTHER_ACCOUNT),
    ):
        assert await run(handlers, command) == [], command.type
    (rejected,) = await run(handlers, enroll_cmd(account_id=OTHER_ACCOUNT))

    assert isinstance(rejected, EnrollmentRejected)
    assert rejected.account_id == OTHER_ACCOUNT
    assert [r.code for r in rejected.payload.rejections] == ["unknown_workflow"]
    assert store.enrollments == before
    assert len(store.history) == history + 1  # only the other account's rejection


async def test_two_accounts_with_the_same_ids_stay_apart(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    """Same workflow id, record id and enroll message id (upstream ids are per account)."""
    message_id = uuid.uuid4()
    for account_id in (ACCOUNT, OTHER_ACCOUNT):
        await run(handlers, apply_cmd(definition(0, 24), account_id=account_id))
    ours = only(await run(handlers, enroll_cmd(message_id=message_id)), EnrollmentEnrolled)
    theirs = only(
        await run(handlers, enroll_cmd(account_id=OTHER_ACCOUNT, message_id=message_id)),
        EnrollmentEnrolled,
    )
    assert ours.payload.enrollment_id != theirs.payload.enrollment_id
    assert ours.message_id != theirs.message_id

    exited = only(await run(handlers, exit_cmd(account_id=OTHER_ACCOUNT)), EnrollmentExited)

    assert exited.payload.enrollment_id == theirs.payload.enrollment_id
    assert store.enrollments[(ACCOUNT, ours.payload.enrollment_id)].status is Status.ACTIVE
    assert store.enrollments[(OTHER_ACCOUNT, theirs.payload.enrollment_id)].status is (
        Status.EXITED
    )


# --- runs of several messages ---------------------------------------------------------


async def test_a_run_of_exits_for_one_record_exits_it_once(
    handlers: Mapping[str, Handler | Batched], store: FakeEnrollmentStore
) -> None:
    enrolled = await enrolled_in(handlers)
    first, second = exit_cmd(), exit_cmd()

    published = await run(handlers, first, second)

    exited = [m for m in published if isinstance(m, EnrollmentExited)]
    assert [e.causation_id for e in exited] == [first.message_id]
    assert (
        store.enrollments[(enrolled.account_id, enrolled.payload.enrollment_id)].status
        is Status.EXITED
    )


async def test_a_run_of_enrollments_admits_the_first_and_rejects_the_repeat(
    handlers: Mapping[str, Handler | Batched],
) -> None:
    await run(handlers, apply_cmd(definition(0, 24)))

    published = await run(handlers, enroll_cmd(), enroll_cmd(record=BOB), enroll_cmd())

    assert [m.type for m in published] == [
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
        EnrollmentEnrolled.TYPE,
        EnrollmentStepScheduled.TYPE,
        EnrollmentRejected.TYPE,
    ]
    rejected = only(published, EnrollmentRejected)
    assert [r.code for r in rejected.payload.rejections] == ["already_enrolled"]
