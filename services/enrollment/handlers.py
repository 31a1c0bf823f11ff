"""Enrollment subscribers: commands and sends in, enrollment and workflow events out.

Each handler gets a run of messages of one type inside the pipeline's transaction: it
loads the state the whole run needs in one query per kind, applies the pure decisions of
``domain`` message by message (a later message sees what an earlier one changed), then
saves, writes history and publishes through the outbox in bulk.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.enrollment import domain
from services.enrollment.ports import (
    EnrollmentStore,
    ExitRecord,
    HistoryEntry,
    NewEnrollment,
    RecordKey,
    StoreFactory,
)
from shared.consumer import Batched, Handler
from shared.contracts import ActorKind, Message, utc_now
from shared.contracts.commands import ApplyWorkflow, Enroll, Exit, Pause, Resume
from shared.contracts.events import (
    CompletedPayload,
    EnrolledPayload,
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentRejected,
    EnrollmentResumed,
    EnrollmentStepCompleted,
    EnrollmentStepScheduled,
    ExitedPayload,
    MessageSent,
    PausedPayload,
    RejectedPayload,
    ResumedPayload,
    StepCompletedPayload,
    StepScheduledPayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.workflow import Step
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

RecordCommand = Exit | Pause | Resume

EnrollmentKey = tuple[str, uuid.UUID]
"""(account id, enrollment id): enrollment ids are only ever compared within an account."""


def _key(enrollment: domain.Enrollment) -> EnrollmentKey:
    return (enrollment.account_id, enrollment.enrollment_id)


def _ref(enrollment: domain.Enrollment) -> dict[str, Any]:
    return {
        "enrollment_id": enrollment.enrollment_id,
        "workflow_id": enrollment.workflow_id,
        "workflow_version": enrollment.workflow_version,
        "record": enrollment.record,
    }


def _event_id(kind: str, cause: Message, subject: uuid.UUID | str) -> uuid.UUID:
    return domain.event_id(kind, cause.account_id, cause.message_id, subject)


def _step_scheduled(
    cause: Message, enrollment: domain.Enrollment, step: Step
) -> EnrollmentStepScheduled:
    assert enrollment.next_due_at is not None  # noqa: S101 - set by the domain for live steps
    return EnrollmentStepScheduled.create(
        message_id=_event_id("step_scheduled", cause, enrollment.enrollment_id),
        account_id=enrollment.account_id,
        caused_by=cause,
        payload=StepScheduledPayload(
            **_ref(enrollment),
            step_index=enrollment.current_step,
            step_id=step.step_id,
            channel=step.channel,
            due_at=enrollment.next_due_at,
        ),
    )


@dataclass
class _Changes:
    """What a run changed, saved in bulk once the run is decided."""

    history: list[HistoryEntry] = field(default_factory=list)
    progress: dict[EnrollmentKey, domain.Enrollment] = field(default_factory=dict)

    def record(
        self,
        enrollment: domain.Enrollment,
        event_type: str,
        cause: Message,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.history.append(
            HistoryEntry(
                account_id=enrollment.account_id,
                workflow_id=enrollment.workflow_id,
                record=enrollment.record,
                event_type=event_type,
                detail={
                    "step": enrollment.current_step,
                    "status": enrollment.status.value,
                    **(detail or {}),
                },
                enrollment_id=enrollment.enrollment_id,
                caused_by=cause.message_id,
                at=utc_now(),
            )
        )


class _LiveEnrollments:
    """The live enrollments of the records a run of commands is about, kept current."""

    def __init__(self, loaded: Sequence[domain.Enrollment]) -> None:
        self.by_id = {_key(e): e for e in loaded}
        self._by_record: dict[RecordKey, list[EnrollmentKey]] = defaultdict(list)
        for enrollment in loaded:
            self._by_record[(enrollment.account_id, enrollment.record)].append(_key(enrollment))

    def targets(self, command: RecordCommand) -> list[domain.Enrollment]:
        payload = command.payload
        found = (self.by_id[i] for i in self._by_record[(command.account_id, payload.record)])
        return [
            e
            for e in found
            if e.status.live
            and payload.workflow_id in (None, e.workflow_id)
            and payload.enrollment_id in (None, e.enrollment_id)
        ]

    def update(self, enrollment: domain.Enrollment) -> None:
        self.by_id[_key(enrollment)] = enrollment


class EnrollmentHandlers:
    def __init__(self, store_factory: StoreFactory) -> None:
        self._store_factory = store_factory

    def _store(self, uow: UnitOfWork[Any]) -> EnrollmentStore:
        return self._store_factory(uow.conn)

    def handlers(self) -> Mapping[str, Handler | Batched]:
        return {
            ApplyWorkflow.TYPE: Batched(self.apply_workflows),  # rare: one at a time
            Enroll.TYPE: Batched(self.enroll),
            Exit.TYPE: Batched(self.exit),
            Pause.TYPE: Batched(self.pause),
            Resume.TYPE: Batched(self.resume),
            MessageSent.TYPE: Batched(self.step_sent),
        }

    async def apply_workflows(self, uow: UnitOfWork[Any], commands: list[ApplyWorkflow]) -> None:
        for command in commands:
            await self.apply_workflow(uow, command)

    async def apply_workflow(self, uow: UnitOfWork[Any], command: ApplyWorkflow) -> None:
        store = self._store(uow)
        definition = command.payload.definition
        head = await store.workflow_head(command.account_id, definition.workflow_id)
        new_hash = domain.definition_hash(definition)
        version = domain.next_version(
            head[0] if head else None, head[1] if head else None, new_hash
        )
        if version is None:
            log.info("workflow_unchanged", workflow_id=definition.workflow_id)
            return
        await store.add_workflow_version(
            command.account_id,
            definition,
            version=version,
            definition_hash=new_hash,
            actor=command.payload.actor,
        )
        uow.publish(
            WorkflowApplied.create(
                message_id=_event_id("workflow_applied", command, definition.workflow_id),
                account_id=command.account_id,
                caused_by=command,
                payload=WorkflowAppliedPayload(
                    version=version, definition=definition, actor=command.payload.actor
                ),
            )
        )
        log.info("workflow_applied", workflow_id=definition.workflow_id, version=version)

    async def enroll(self, uow: UnitOfWork[Any], commands: list[Enroll]) -> None:
        store = self._store(uow)
        now = utc_now()
        workflows = await store.current_workflows(
            [(c.account_id, c.payload.workflow_id) for c in commands]
        )
        previous: dict[tuple[str, str, Any], list[domain.Enrollment]] = defaultdict(list)
        for enrollment in await store.enrollments_in_workflows_for_update(
            [(c.account_id, c.payload.workflow_id, c.payload.record) for c in commands]
        ):
            previous[(enrollment.account_id, enrollment.workflow_id, enrollment.record)].append(
                enrollment
            )
        new: list[NewEnrollment] = []
        changes = _Changes()
        for command in commands:
            payload = command.payload
            key = (command.account_id, payload.workflow_id, payload.record)
            decision = domain.decide_enrollment(
                workflow=workflows.get((command.account_id, payload.workflow_id)),
                workflow_id=payload.workflow_id,
                record=payload.record,
                account_id=command.account_id,
                previous=previous[key],
                now=now,
                enrollment_id=domain.enrollment_id_for(
                    command.account_id, command.message_id, payload.workflow_id
                ),
            )
            if isinstance(decision, domain.Refused):
                self._reject(uow, changes, command, decision)
                continue
            enrollment = decision.enrollment
            previous[key].append(enrollment)
            new.append(NewEnrollment(enrollment, payload.contact, payload.actor))
            changes.record(enrollment, EnrollmentEnrolled.TYPE, command)
            uow.publish(
                EnrollmentEnrolled.create(
                    message_id=_event_id("enrolled", command, enrollment.enrollment_id),
                    account_id=command.account_id,
                    caused_by=command,
                    payload=EnrolledPayload(
                        **_ref(enrollment), contact=payload.contact, actor=payload.actor
                    ),
                )
            )
            uow.publish(_step_scheduled(command, enrollment, decision.first_step))
        await store.insert_enrollments(new)
        await store.add_history(changes.history)
        log.info("enroll_run", admitted=len(new), rejected=len(commands) - len(new))

    @staticmethod
    def _reject(
        uow: UnitOfWork[Any], changes: _Changes, command: Enroll, decision: domain.Refused
    ) -> None:
        payload = command.payload
        changes.history.append(
            HistoryEntry(
                account_id=command.account_id,
                workflow_id=payload.workflow_id,
                record=payload.record,
                event_type=EnrollmentRejected.TYPE,
                detail={"rejections": [r.model_dump() for r in decision.rejections]},
                enrollment_id=None,
                caused_by=command.message_id,
                at=utc_now(),
            )
        )
        uow.publish(
            EnrollmentRejected.create(
                message_id=_event_id("rejected", command, payload.workflow_id),
                account_id=command.account_id,
                caused_by=command,
                payload=RejectedPayload(
                    workflow_id=payload.workflow_id,
                    record=payload.record,
                    actor=payload.actor,
                    rejections=decision.rejections,
                ),
            )
        )
        log.info("enrollment_rejected", codes=[r.code for r in decision.rejections])

    async def _live(
        self, store: EnrollmentStore, commands: Sequence[RecordCommand]
    ) -> _LiveEnrollments:
        return _LiveEnrollments(
            await store.live_enrollments_for_update(
                [(c.account_id, c.payload.record) for c in commands]
            )
        )

    async def exit(self, uow: UnitOfWork[Any], commands: list[Exit]) -> None:
        store = self._store(uow)
        now = utc_now()
        live = await self._live(store, commands)
        versions = await store.workflow_versions(
            [(e.account_id, e.workflow_id, e.workflow_version) for e in live.by_id.values()]
        )
        exits: list[ExitRecord] = []
        changes = _Changes()
        for command in commands:
            payload = command.payload
            for enrollment in live.targets(command):
                workflow = versions.get(
                    (enrollment.account_id, enrollment.workflow_id, enrollment.workflow_version)
                )
                decision = domain.decide_exit(
                    enrollment,
                    reason=payload.reason,
                    source=payload.source,
                    agents_may_stop=(
                        workflow.definition.settings.agents_may_stop if workflow else True
                    ),
                    by_user=payload.actor.kind is ActorKind.USER,
                    now=now,
                )
                if isinstance(decision, domain.Unchanged):
                    log.info(
                        "exit_refused",
                        enrollment_id=str(enrollment.enrollment_id),
                        why=decision.why,
                    )
                    continue
                exited = decision.enrollment
                live.update(exited)
                exits.append(
                    ExitRecord(exited, payload.source, payload.actor, payload.triggering_event)
                )
                changes.record(
                    exited,
                    EnrollmentExited.TYPE,
                    command,
                    {
                        "reason": payload.reason.value,
                        "source": payload.source.value,
                        "actor": payload.actor.model_dump(),
                        "triggering_event": (
                            payload.triggering_event.model_dump(mode="json")
                            if payload.triggering_event
                            else None
                        ),
                    },
                )
                uow.publish(
                    EnrollmentExited.create(
                        message_id=_event_id("exited", command, exited.enrollment_id),
                        account_id=command.account_id,
                        caused_by=command,
                        payload=ExitedPayload(
                            **_ref(exited),
                            reason=payload.reason,
                            source=payload.source,
                            actor=payload.actor,
                            triggering_event=payload.triggering_event,
                            steps_completed=exited.steps_completed,
                        ),
                    )
                )
        await store.save_exits(exits)
        await store.add_history(changes.history)
        log.info("exit_run", commands=len(commands), exited=len(exits))

    async def pause(self, uow: UnitOfWork[Any], commands: list[Pause]) -> None:
        store = self._store(uow)
        live = await self._live(store, commands)
        changes = _Changes()
        for command in commands:
            payload = command.payload
            for enrollment in live.targets(command):
                decision = domain.decide_pause(enrollment)
                if isinstance(decision, domain.Unchanged):
                    continue
                live.update(decision)
                changes.progress[_key(decision)] = decision
                changes.record(decision, EnrollmentPaused.TYPE, command, {"reason": payload.reason})
                uow.publish(
                    EnrollmentPaused.create(
                        message_id=_event_id("paused", command, decision.enrollment_id),
                        account_id=command.account_id,
                        caused_by=command,
                        payload=PausedPayload(
                            **_ref(decision),
                            until=payload.until,
                            reason=payload.reason,
                            actor=payload.actor,
                        ),
                    )
                )
        await store.save_progress(list(changes.progress.values()))
        await store.add_history(changes.history)

    async def resume(self, uow: UnitOfWork[Any], commands: list[Resume]) -> None:
        store = self._store(uow)
        live = await self._live(store, commands)
        versions = await store.workflow_versions(
            [(e.account_id, e.workflow_id, e.workflow_version) for e in live.by_id.values()]
        )
        changes = _Changes()
        for command in commands:
            for enrollment in live.targets(command):
                decision = domain.decide_resume(enrollment, now=utc_now())
                if isinstance(decision, domain.Unchanged):
                    continue
                workflow = versions.get(
                    (decision.account_id, decision.workflow_id, decision.workflow_version)
                )
                if workflow is None:
                    raise RuntimeError(f"workflow version of {decision.enrollment_id} is missing")
                live.update(decision)
                changes.progress[_key(decision)] = decision
                changes.record(decision, EnrollmentResumed.TYPE, command)
                uow.publish(
                    EnrollmentResumed.create(
                        message_id=_event_id("resumed", command, decision.enrollment_id),
                        account_id=command.account_id,
                        caused_by=command,
                        payload=ResumedPayload(**_ref(decision), actor=command.payload.actor),
                    )
                )
                step = workflow.definition.steps[decision.current_step]
                uow.publish(_step_scheduled(command, decision, step))
        await store.save_progress(list(changes.progress.values()))
        await store.add_history(changes.history)

    async def step_sent(self, uow: UnitOfWork[Any], events: list[MessageSent]) -> None:
        store = self._store(uow)
        loaded = await store.enrollments_for_update(
            [(e.account_id, e.payload.enrollment_id) for e in events]
        )
        state = {_key(e): e for e in loaded}
        versions = await store.workflow_versions(
            [(e.account_id, e.workflow_id, e.workflow_version) for e in loaded]
        )
        changes = _Changes()
        for event in events:
            sent = event.payload
            enrollment = state.get((event.account_id, sent.enrollment_id))
            if enrollment is None:
                log.warning("sent_for_unknown_enrollment", enrollment_id=str(sent.enrollment_id))
                continue
            workflow = versions.get(
                (enrollment.account_id, enrollment.workflow_id, enrollment.workflow_version)
            )
            if workflow is None:
                raise RuntimeError(f"workflow version of {enrollment.enrollment_id} is missing")
            decision = domain.on_step_sent(
                enrollment, workflow.definition, step_index=sent.step_index, sent_at=sent.sent_at
            )
            if isinstance(decision, domain.Unchanged):
                log.info(
                    "step_sent_ignored", enrollment_id=str(sent.enrollment_id), why=decision.why
                )
                continue
            self._advance(uow, changes, event, enrollment, decision)
            state[_key(enrollment)] = decision.enrollment
        await store.save_progress(list(changes.progress.values()))
        await store.add_history(changes.history)

    @staticmethod
    def _advance(
        uow: UnitOfWork[Any],
        changes: _Changes,
        event: MessageSent,
        before: domain.Enrollment,
        decision: domain.ScheduleNext | domain.Complete,
    ) -> None:
        sent = event.payload
        after = decision.enrollment
        changes.progress[_key(after)] = after
        changes.record(
            after,
            EnrollmentStepCompleted.TYPE,
            event,
            {"step_index": sent.step_index, "provider_message_id": sent.provider_message_id},
        )
        uow.publish(
            EnrollmentStepCompleted.create(
                message_id=_event_id("step_completed", event, before.enrollment_id),
                account_id=event.account_id,
                caused_by=event,
                payload=StepCompletedPayload(
                    **_ref(before),
                    step_index=sent.step_index,
                    step_id=sent.step_id,
                    provider_message_id=sent.provider_message_id,
                ),
            )
        )
        if isinstance(decision, domain.ScheduleNext):
            # A paused enrollment records the sent step; resuming schedules the next one.
            if after.status is domain.Status.ACTIVE:
                uow.publish(_step_scheduled(event, after, decision.step))
            return
        changes.record(after, EnrollmentCompleted.TYPE, event)
        uow.publish(
            EnrollmentCompleted.create(
                message_id=_event_id("completed", event, after.enrollment_id),
                account_id=event.account_id,
                caused_by=event,
                payload=CompletedPayload(**_ref(after), steps_completed=after.steps_completed),
            )
        )
