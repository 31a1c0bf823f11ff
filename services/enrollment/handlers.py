"""Enrollment subscribers: commands and sends in, enrollment and workflow events out.

Each handler runs inside the pipeline's transaction: load, decide (``domain``), save,
write history, publish through the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from services.enrollment import domain
from services.enrollment.ports import EnrollmentStore, StoreFactory
from shared.consumer import Handler
from shared.contracts import ActorKind, Message, derived_message_id, utc_now
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
from shared.outbox import UnitOfWork

log = get_logger(__name__)


def _ref(enrollment: domain.Enrollment) -> dict[str, Any]:
    return {
        "enrollment_id": enrollment.enrollment_id,
        "workflow_id": enrollment.workflow_id,
        "workflow_version": enrollment.workflow_version,
        "record": enrollment.record,
    }


def _event_id(kind: str, cause: Message, enrollment_id: uuid.UUID | str) -> uuid.UUID:
    # Same cause, same event id: a replayed command can never publish a second event.
    return derived_message_id(kind, cause.message_id, enrollment_id)


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


class EnrollmentHandlers:
    def __init__(self, store_factory: StoreFactory) -> None:
        self._store_factory = store_factory

    def _store(self, uow: UnitOfWork) -> EnrollmentStore:
        return self._store_factory(uow.conn)

    def handlers(self) -> Mapping[str, Handler]:
        return {
            ApplyWorkflow.TYPE: self.apply_workflow,
            Enroll.TYPE: self.enroll,
            Exit.TYPE: self.exit,
            Pause.TYPE: self.pause,
            Resume.TYPE: self.resume,
            MessageSent.TYPE: self.step_sent,
        }

    async def apply_workflow(self, uow: UnitOfWork, command: ApplyWorkflow) -> None:
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

    async def enroll(self, uow: UnitOfWork, command: Enroll) -> None:
        store = self._store(uow)
        payload = command.payload
        now = utc_now()
        workflow = await store.current_workflow(command.account_id, payload.workflow_id)
        previous = await store.record_enrollments_for_update(
            command.account_id, payload.workflow_id, payload.record
        )
        decision = domain.decide_enrollment(
            workflow=workflow,
            workflow_id=payload.workflow_id,
            record=payload.record,
            account_id=command.account_id,
            previous=previous,
            now=now,
            enrollment_id=_event_id("enrollment", command, payload.workflow_id),
        )
        if isinstance(decision, domain.Refused):
            await store.add_history(
                account_id=command.account_id,
                workflow_id=payload.workflow_id,
                record=payload.record,
                event_type=EnrollmentRejected.TYPE,
                detail={"rejections": [r.model_dump() for r in decision.rejections]},
                enrollment_id=None,
                caused_by=command.message_id,
                at=now,
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
            return
        enrollment = decision.enrollment
        await store.insert_enrollment(enrollment, contact=payload.contact, actor=payload.actor)
        await self._history(store, enrollment, EnrollmentEnrolled.TYPE, {}, command)
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
        log.info("enrolled", enrollment_id=str(enrollment.enrollment_id))

    async def exit(self, uow: UnitOfWork, command: Exit) -> None:
        store = self._store(uow)
        payload = command.payload
        now = utc_now()
        targets = await store.live_enrollments_for_update(
            command.account_id,
            payload.record,
            workflow_id=payload.workflow_id,
            enrollment_id=payload.enrollment_id,
        )
        if not targets:
            log.info("exit_without_live_enrollment", reason=payload.reason.value)
        for enrollment in targets:
            workflow = await store.workflow_version(
                enrollment.account_id, enrollment.workflow_id, enrollment.workflow_version
            )
            decision = domain.decide_exit(
                enrollment,
                reason=payload.reason,
                source=payload.source,
                agents_may_stop=workflow.definition.settings.agents_may_stop if workflow else True,
                by_user=payload.actor.kind is ActorKind.USER,
                now=now,
            )
            if isinstance(decision, domain.Unchanged):
                log.info(
                    "exit_refused", enrollment_id=str(enrollment.enrollment_id), why=decision.why
                )
                continue
            exited = decision.enrollment
            await store.save_exit(
                exited,
                source=payload.source,
                actor=payload.actor,
                triggering_event=payload.triggering_event,
            )
            detail = {
                "reason": payload.reason.value,
                "source": payload.source.value,
                "actor": payload.actor.model_dump(),
                "triggering_event": (
                    payload.triggering_event.model_dump(mode="json")
                    if payload.triggering_event
                    else None
                ),
                "at_step": exited.current_step,
            }
            await self._history(store, exited, EnrollmentExited.TYPE, detail, command)
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
            log.info(
                "enrollment_exited",
                enrollment_id=str(exited.enrollment_id),
                reason=payload.reason.value,
            )

    async def pause(self, uow: UnitOfWork, command: Pause) -> None:
        store = self._store(uow)
        payload = command.payload
        targets = await store.live_enrollments_for_update(
            command.account_id,
            payload.record,
            workflow_id=payload.workflow_id,
            enrollment_id=payload.enrollment_id,
        )
        for enrollment in targets:
            decision = domain.decide_pause(enrollment)
            if isinstance(decision, domain.Unchanged):
                continue
            await store.save_progress(decision)
            await self._history(
                store, decision, EnrollmentPaused.TYPE, {"reason": payload.reason}, command
            )
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

    async def resume(self, uow: UnitOfWork, command: Resume) -> None:
        store = self._store(uow)
        payload = command.payload
        targets = await store.live_enrollments_for_update(
            command.account_id,
            payload.record,
            workflow_id=payload.workflow_id,
            enrollment_id=payload.enrollment_id,
        )
        for enrollment in targets:
            decision = domain.decide_resume(enrollment, now=utc_now())
            if isinstance(decision, domain.Unchanged):
                continue
            workflow = await store.workflow_version(
                decision.account_id, decision.workflow_id, decision.workflow_version
            )
            if workflow is None:
                raise RuntimeError(f"workflow version of {decision.enrollment_id} is missing")
            await store.save_progress(decision)
            await self._history(store, decision, EnrollmentResumed.TYPE, {}, command)
            uow.publish(
                EnrollmentResumed.create(
                    message_id=_event_id("resumed", command, decision.enrollment_id),
                    account_id=command.account_id,
                    caused_by=command,
                    payload=ResumedPayload(**_ref(decision), actor=payload.actor),
                )
            )
            step = workflow.definition.steps[decision.current_step]
            uow.publish(_step_scheduled(command, decision, step))

    async def step_sent(self, uow: UnitOfWork, event: MessageSent) -> None:
        store = self._store(uow)
        sent = event.payload
        enrollment = await store.enrollment_for_update(event.account_id, sent.enrollment_id)
        if enrollment is None:
            log.warning("sent_for_unknown_enrollment", enrollment_id=str(sent.enrollment_id))
            return
        workflow = await store.workflow_version(
            enrollment.account_id, enrollment.workflow_id, enrollment.workflow_version
        )
        if workflow is None:
            raise RuntimeError(f"workflow version of {enrollment.enrollment_id} is missing")
        decision = domain.on_step_sent(
            enrollment, workflow.definition, step_index=sent.step_index, sent_at=sent.sent_at
        )
        if isinstance(decision, domain.Unchanged):
            log.info("step_sent_ignored", enrollment_id=str(sent.enrollment_id), why=decision.why)
            return
        await store.save_progress(decision.enrollment)
        detail = {"step_index": sent.step_index, "provider_message_id": sent.provider_message_id}
        await self._history(store, decision.enrollment, EnrollmentStepCompleted.TYPE, detail, event)
        uow.publish(
            EnrollmentStepCompleted.create(
                message_id=_event_id("step_completed", event, enrollment.enrollment_id),
                account_id=event.account_id,
                caused_by=event,
                payload=StepCompletedPayload(
                    **_ref(enrollment),
                    step_index=sent.step_index,
                    step_id=sent.step_id,
                    provider_message_id=sent.provider_message_id,
                ),
            )
        )
        if isinstance(decision, domain.ScheduleNext):
            # A paused enrollment records the sent step; resuming schedules the next one.
            if decision.enrollment.status is domain.Status.ACTIVE:
                uow.publish(_step_scheduled(event, decision.enrollment, decision.step))
            return
        completed = decision.enrollment
        await self._history(store, completed, EnrollmentCompleted.TYPE, {}, event)
        uow.publish(
            EnrollmentCompleted.create(
                message_id=_event_id("completed", event, completed.enrollment_id),
                account_id=event.account_id,
                caused_by=event,
                payload=CompletedPayload(
                    **_ref(completed), steps_completed=completed.steps_completed
                ),
            )
        )

    @staticmethod
    async def _history(
        store: EnrollmentStore,
        enrollment: domain.Enrollment,
        event_type: str,
        detail: dict[str, Any],
        cause: Message,
    ) -> None:
        await store.add_history(
            account_id=enrollment.account_id,
            workflow_id=enrollment.workflow_id,
            record=enrollment.record,
            event_type=event_type,
            detail={"step": enrollment.current_step, "status": enrollment.status.value, **detail},
            enrollment_id=enrollment.enrollment_id,
            caused_by=cause.message_id,
            at=utc_now(),
        )
