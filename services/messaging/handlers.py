"""Messaging subscribers: keep the projections and queue due steps for the sender.

They run in the pipeline's batch transaction and never call a provider: a due step only
becomes a ``pending`` row here; ``sender`` re-checks the enrollment and sends it after this
transaction commits (the NOTIFY written here wakes it then). Each handler takes a whole
run of consecutive messages and applies it with a fixed number of statements, exactly as
if the messages were applied one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from services.messaging import domain
from services.messaging.config import MessagingSettings
from services.messaging.errors import StepMismatchError, UnknownWorkflowStepError
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


async def workflows_applied(
    uow: UnitOfWork[MessagingStore], events: list[WorkflowApplied], now: datetime
) -> None:
    """Keep the steps of the new versions (due steps are rendered from them): 1 statement."""
    del now
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

    def __init__(self, *, message_id_domain: str, default_sender: str) -> None:
        self._message_id_domain = message_id_domain
        self._default_sender = default_sender

    async def __call__(
        self, uow: UnitOfWork[MessagingStore], events: list[StepDue], now: datetime
    ) -> None:
        """Queue each step as a pending send; a step is queued at most once per enrollment.

        One lookup of the run's steps, one insert of its sends, one NOTIFY. Due times are
        compared with the sender's clock, so they are set by ours (``now``), not the
        database's: a skew between the two would otherwise delay every send.
        """
        steps = await uow.store.workflow_steps({_step_key(event) for event in events})
        sends: dict[domain.SendKey, domain.Send] = {}
        for event in events:
            send = self._send_for(event, steps.get(_step_key(event)))
            # A step due twice in the run: only the first can be queued, the second finds
            # it pending (or as the first found it).
            sends.setdefault(send.key, send)
        queued = await uow.store.add_pending_sends(list(sends.values()), now=now)
        if queued:
            await uow.store.wake_senders()
        for event in events:
            due = event.payload
            key = (event.account_id, due.enrollment_id, due.step_index)
            if key in queued and sends[key].cause_message_id == event.message_id:
                log.info(
                    "send_queued",
                    enrollment_id=str(due.enrollment_id),
                    step_index=due.step_index,
                    provider_message_id=sends[key].provider_message_id,
                )
            else:
                log.info(
                    "send_already_queued",
                    enrollment_id=str(due.enrollment_id),
                    step_index=due.step_index,
                )

    def _send_for(self, event: StepDue, step: domain.WorkflowStep | None) -> domain.Send:
        due = event.payload
        if step is None:
            raise UnknownWorkflowStepError(
                event.account_id, due.workflow_id, due.workflow_version, due.step_index
            )
        if step.step_id != due.step_id or step.channel is not due.channel:
            raise StepMismatchError(
                workflow_id=due.workflow_id,
                version=due.workflow_version,
                step_index=due.step_index,
                due=(due.step_id, due.channel.value),
                known=(step.step_id, step.channel.value),
            )
        return domain.pending_send(
            step,
            enrollment_id=due.enrollment_id,
            record=due.record,
            message_id_domain=self._message_id_domain,
            default_sender=self._default_sender,
            cause_message_id=event.message_id,
            correlation_id=event.correlation_id or event.message_id,
        )


def _step_key(event: StepDue) -> StepKey:
    due = event.payload
    return (event.account_id, due.workflow_id, due.workflow_version, due.step_index)


def build_handlers(settings: MessagingSettings) -> Mapping[str, Handler]:
    """Message type -> handler, for ``ServiceSpec.handlers``.

    The five enrollment events share one handler, so a stream mixing them is still one run.
    """
    return {
        WorkflowApplied.TYPE: workflows_applied,
        StepDue.TYPE: DueSteps(
            message_id_domain=settings.message_id_domain,
            default_sender=settings.default_sender,
        ),
        EnrollmentEnrolled.TYPE: enrollments_changed,
        EnrollmentPaused.TYPE: enrollments_changed,
        EnrollmentResumed.TYPE: enrollments_changed,
        EnrollmentCompleted.TYPE: enrollments_changed,
        EnrollmentExited.TYPE: enrollments_changed,
    }
