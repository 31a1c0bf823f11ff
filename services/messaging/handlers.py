"""Messaging subscribers: keep the projections and queue due steps for the sender.

They run in the pipeline's batch transaction and never call a provider: a due step only
becomes a ``pending`` row here; ``sender`` re-checks the enrollment and sends it after this
transaction commits (the NOTIFY written here wakes it then). A due step whose workflow
version has not arrived yet is parked, and queued by that version's ``workflow.applied``
(``parking``). Each handler takes a whole run of consecutive messages and applies it with a
fixed number of statements, exactly as if the messages were applied one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.messaging import domain, messages, parking
from services.messaging.config import MessagingSettings
from services.messaging.errors import StepMismatchError, UnknownWorkflowStepError
from services.messaging.parking import VersionKey
from services.messaging.ports import MessagingStore, StepKey
from shared.consumer import Handler
from shared.contracts.events import (
    EnrollmentCompleted,
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentPaused,
    EnrollmentResumed,
    StepDue,
    WorkflowApplied,
)
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

EnrollmentEvent = (
    EnrollmentEnrolled
    | EnrollmentPaused
    | EnrollmentResumed
    | EnrollmentCompleted
    | EnrollmentExited
)


@dataclass(frozen=True, slots=True)
class Rendering:
    """What a send is rendered with besides its step: the settings both handlers share."""

    message_id_domain: str
    default_sender: str

    def send(self, step: domain.WorkflowStep, event: StepDue) -> domain.Send:
        return domain.pending_send(
            step,
            enrollment_id=event.payload.enrollment_id,
            record=event.payload.record,
            message_id_domain=self.message_id_domain,
            default_sender=self.default_sender,
            cause_message_id=event.message_id,
            correlation_id=event.correlation_id or event.message_id,
        )

    def redrive(self, parked: parking.ParkedStep, step: domain.WorkflowStep) -> domain.Send:
        return parking.redrive(
            parked,
            step,
            message_id_domain=self.message_id_domain,
            default_sender=self.default_sender,
        )


class WorkflowsApplied:
    """The ``workflow.applied`` handler: keeps the steps of new versions and queues the
    steps parked for them."""

    def __init__(self, rendering: Rendering) -> None:
        self._rendering = rendering

    async def __call__(
        self, uow: UnitOfWork[MessagingStore], events: list[WorkflowApplied], now: datetime
    ) -> None:
        """Save the versions' steps (1 statement), then queue what was parked for them
        (1 lookup; 1 insert, 1 NOTIFY and 1 update when there is any)."""
        steps: dict[StepKey, domain.WorkflowStep] = {}
        for event in events:
            definition = event.payload.definition
            for step in domain.steps_of(event.account_id, event.payload.version, definition):
                key = (step.account_id, step.workflow_id, step.version, step.step_index)
                steps.setdefault(key, step)  # a version applied twice in the run: the first
            log.info(
                "workflow_steps_saved",
                workflow_id=definition.workflow_id,
                version=event.payload.version,
                steps=len(definition.steps),
            )
        await uow.store.save_workflow_steps(list(steps.values()))
        parked = await uow.store.parked_of({key[:3] for key in steps})
        if parked:
            await self._redrive(uow, parked, steps, now)

    async def _redrive(
        self,
        uow: UnitOfWork[MessagingStore],
        parked: list[parking.ParkedStep],
        steps: Mapping[StepKey, domain.WorkflowStep],
        now: datetime,
    ) -> None:
        sends: list[domain.Send] = []
        failed: list[parking.ParkedFailed] = []
        for waiting in parked:
            step = steps.get((*waiting.version, waiting.step_index))
            if step is None:
                reason = UnknownWorkflowStepError(*waiting.version, waiting.step_index).reason
            elif not parking.matches(step, step_id=waiting.step_id, channel=waiting.channel):
                due = (waiting.step_id, waiting.channel.value)
                reason = _mismatch(*waiting.version[1:], waiting.step_index, due, step).reason
            else:
                sends.append(self._rendering.redrive(waiting, step))
                continue
            # The version is here and says this step can never be sent as it was due.
            failed.append(parking.ParkedFailed(waiting, reason, now))
        queued = await uow.store.add_pending_sends(sends, now=now)
        if queued:
            await uow.store.wake_senders()
        await uow.store.fail_parked(failed)
        for failure in failed:
            uow.publish(messages.message_failed(failure))
            log.error("parked_step_failed", reason=failure.reason, **_step_fields(failure.parked))
        for send in sends:
            log.info(
                "parked_step_queued",
                enrollment_id=str(send.enrollment_id),
                step_index=send.step_index,
                account_id=send.account_id,
            )


def _mismatch(
    workflow_id: str, version: int, step_index: int, due: tuple[str, str], step: domain.WorkflowStep
) -> StepMismatchError:
    return StepMismatchError(
        workflow_id=workflow_id,
        version=version,
        step_index=step_index,
        due=due,
        known=(step.step_id, step.channel.value),
    )


def _step_fields(parked: parking.ParkedStep) -> dict[str, object]:
    return {
        "enrollment_id": str(parked.enrollment_id),
        "step_index": parked.step_index,
        "account_id": parked.account_id,
        "workflow_id": parked.workflow_id,
        "workflow_version": parked.workflow_version,
    }


async def enrollments_changed(
    uow: UnitOfWork[MessagingStore], events: list[EnrollmentEvent], now: datetime
) -> None:
    """Project the enrollments' status; the sender re-checks it at send time.

    Locking the projection rows waits for a sender that is sending to one of these
    enrollments: the change commits after those sends, and every later claim sees it.
    The run is folded in order in memory (each event sees what the earlier ones made of
    its enrollment), then saved at once: one lock, one upsert, at most one re-queue of
    paused sends and one NOTIFY per run.
    """
    seen = [_seen(event) for event in events]
    # Keyed by account as well: another account's enrollment with the same id is another
    # row, never this one.
    views = await uow.store.enrollments_for_update({s.key for s in seen})
    changed: dict[domain.EnrollmentKey, domain.EnrollmentView] = {}
    resumed: list[domain.EnrollmentKey] = []
    for event in seen:
        view = domain.project(views.get(event.key), event)
        views[event.key] = changed[event.key] = view
        if domain.requeues_paused_sends(event, view):
            # Later events of the run only change the projection, which the sender
            # re-checks, so re-queueing after the whole run is the same as one by one.
            resumed.append(event.key)
        log.info(
            "enrollment_projected",
            enrollment_id=str(event.enrollment_id),
            change=event.change.value,
            status=view.status.value,
        )
    await uow.store.save_enrollments(list(changed.values()))
    if resumed:
        rearmed = await uow.store.rearm_paused_sends(resumed, now=now)
        if rearmed:
            await uow.store.wake_senders()
            log.info("paused_sends_requeued", count=rearmed)


def _seen(event: EnrollmentEvent) -> domain.EnrollmentSeen:
    payload = event.payload
    email = None
    if isinstance(event, EnrollmentEnrolled) and event.payload.contact is not None:
        email = event.payload.contact.email
    return domain.EnrollmentSeen(
        change=domain.EnrollmentChange(event.type),
        enrollment_id=payload.enrollment_id,
        account_id=event.account_id,
        workflow_id=payload.workflow_id,
        workflow_version=payload.workflow_version,
        record=payload.record,
        email=email,
    )


class DueSteps:
    """The ``step.due`` handler, with the settings a rendered send needs."""

    def __init__(self, rendering: Rendering) -> None:
        self._rendering = rendering

    async def __call__(
        self, uow: UnitOfWork[MessagingStore], events: list[StepDue], now: datetime
    ) -> None:
        """Queue each step as a pending send; a step is queued at most once per enrollment.

        One lookup of the run's steps, one insert of its sends, one NOTIFY. A step whose
        version is not projected yet is parked (one more lookup and one insert, only then):
        ``workflow.applied`` of that version queues it. Due times are compared with the
        sender's clock, so they are set by ours (``now``), not the database's: a skew
        between the two would otherwise delay every send.
        """
        steps = await uow.store.workflow_steps({_step_key(event) for event in events})
        missing = {_version_key(e) for e in events if _step_key(e) not in steps}
        known_versions = await uow.store.known_versions(missing) if missing else set()
        sends: dict[domain.SendKey, domain.Send] = {}
        parked: dict[domain.SendKey, parking.ParkedStep] = {}
        for event in events:
            step = steps.get(_step_key(event))
            if step is None:
                if _version_key(event) in known_versions:
                    raise UnknownWorkflowStepError(*_step_key(event))
                # A step due twice in the run: only the first is parked.
                waiting = self._parked(event, now)
                parked.setdefault(waiting.key, waiting)
                continue
            send = self._send_for(event, step)
            # A step due twice in the run: only the first can be queued, the second finds
            # it pending (or as the first found it).
            sends.setdefault(send.key, send)
        queued = await uow.store.add_pending_sends(list(sends.values()), now=now)
        if queued:
            await uow.store.wake_senders()
        newly_parked = await uow.store.park_steps(list(parked.values())) if parked else set()
        for event in events:
            due = event.payload
            key = (event.account_id, due.enrollment_id, due.step_index)
            fields = {"enrollment_id": str(due.enrollment_id), "step_index": due.step_index}
            if key in queued and sends[key].cause_message_id == event.message_id:
                log.info(
                    "send_queued",
                    provider_message_id=sends[key].provider_message_id,
                    **fields,
                )
            elif key in newly_parked and parked[key].cause_message_id == event.message_id:
                log.info(
                    "step_parked_until_workflow_applied",
                    workflow_id=due.workflow_id,
                    workflow_version=due.workflow_version,
                    **fields,
                )
            else:
                log.info("send_already_queued", **fields)

    def _send_for(self, event: StepDue, step: domain.WorkflowStep) -> domain.Send:
        due = event.payload
        if not parking.matches(step, step_id=due.step_id, channel=due.channel):
            raise _mismatch(
                due.workflow_id,
                due.workflow_version,
                due.step_index,
                (due.step_id, due.channel.value),
                step,
            )
        return self._rendering.send(step, event)

    def _parked(self, event: StepDue, now: datetime) -> parking.ParkedStep:
        due = event.payload
        return parking.ParkedStep(
            enrollment_id=due.enrollment_id,
            step_index=due.step_index,
            account_id=event.account_id,
            workflow_id=due.workflow_id,
            workflow_version=due.workflow_version,
            record=due.record,
            step_id=due.step_id,
            channel=due.channel,
            provider_message_id=domain.provider_message_id(
                due.enrollment_id, due.step_index, self._rendering.message_id_domain
            ),
            parked_at=now,
            cause_message_id=event.message_id,
            correlation_id=event.correlation_id or event.message_id,
        )


def _version_key(event: StepDue) -> VersionKey:
    return (event.account_id, event.payload.workflow_id, event.payload.workflow_version)


def _step_key(event: StepDue) -> StepKey:
    due = event.payload
    return (event.account_id, due.workflow_id, due.workflow_version, due.step_index)


def build_handlers(settings: MessagingSettings) -> Mapping[str, Handler]:
    """Message type -> handler, for ``ServiceSpec.handlers``.

    The five enrollment events share one handler, so a stream mixing them is still one run.
    """
    rendering = Rendering(settings.message_id_domain, settings.default_sender)
    return {
        WorkflowApplied.TYPE: WorkflowsApplied(rendering),
        StepDue.TYPE: DueSteps(rendering),
        EnrollmentEnrolled.TYPE: enrollments_changed,
        EnrollmentPaused.TYPE: enrollments_changed,
        EnrollmentResumed.TYPE: enrollments_changed,
        EnrollmentCompleted.TYPE: enrollments_changed,
        EnrollmentExited.TYPE: enrollments_changed,
    }
