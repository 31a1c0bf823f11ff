"""Messaging subscribers: keep the projections and queue due steps for the sender.

They run in the pipeline's batch transaction and never call a provider: a due step only
becomes a ``pending`` row here; ``sender`` re-checks the enrollment and sends it after this
transaction commits (the NOTIFY written here wakes it then).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from services.messaging import domain
from services.messaging.errors import StepMismatchError, UnknownWorkflowStepError
from services.messaging.ports import MessagingStore, StoreFactory
from shared.consumer import Handler, RejectedMessageError
from shared.contracts import utc_now
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
from shared.outbox import UnitOfWork

log = get_logger(__name__)

EnrollmentEvent = (
    EnrollmentEnrolled
    | EnrollmentPaused
    | EnrollmentResumed
    | EnrollmentCompleted
    | EnrollmentExited
)


class MessagingHandlers:
    """The handlers, with the store factory and the settings they need."""

    def __init__(
        self,
        store_factory: StoreFactory,
        *,
        message_id_domain: str,
        default_sender: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store_factory = store_factory
        self._message_id_domain = message_id_domain
        self._default_sender = default_sender
        self._clock = clock

    def _store(self, uow: UnitOfWork) -> MessagingStore:
        return self._store_factory(uow.conn)

    def handlers(self) -> Mapping[str, Handler]:
        """Message type -> handler, for ``ServiceSpec.handlers``."""
        return {
            WorkflowApplied.TYPE: self.workflow_applied,
            StepDue.TYPE: self.step_due,
            EnrollmentEnrolled.TYPE: self.enrollment_changed,
            EnrollmentPaused.TYPE: self.enrollment_changed,
            EnrollmentResumed.TYPE: self.enrollment_changed,
            EnrollmentCompleted.TYPE: self.enrollment_changed,
            EnrollmentExited.TYPE: self.enrollment_changed,
        }

    async def workflow_applied(self, uow: UnitOfWork, event: WorkflowApplied) -> None:
        """Keep the steps of the new version: due steps are rendered from them."""
        definition = event.payload.definition
        steps = [
            domain.WorkflowStep(
                account_id=event.account_id,
                workflow_id=definition.workflow_id,
                version=event.payload.version,
                step_index=index,
                step_id=step.step_id,
                channel=step.channel,
                subject=step.subject,
                body=step.body,
                sender=step.sender,
            )
            for index, step in enumerate(definition.steps)
        ]
        await self._store(uow).save_workflow_steps(steps)
        log.info(
            "workflow_steps_saved",
            workflow_id=definition.workflow_id,
            version=event.payload.version,
            steps=len(steps),
        )

    async def step_due(self, uow: UnitOfWork, event: StepDue) -> None:
        """Queue the step as a pending send; a step is queued at most once per enrollment."""
        store = self._store(uow)
        due = event.payload
        step = await store.workflow_step(
            event.account_id, due.workflow_id, due.workflow_version, due.step_index
        )
        if step is None:
            raise UnknownWorkflowStepError(
                event.account_id, due.workflow_id, due.workflow_version, due.step_index
            )
        if step.step_id != due.step_id or step.channel is not due.channel:
            raise StepMismatchError(
                f"step.due names step {due.step_index} as {due.step_id!r} ({due.channel.value}) "
                f"but version {due.workflow_version} of {due.workflow_id!r} has "
                f"{step.step_id!r} ({step.channel.value}) there; the scheduler and enrollment "
                "disagree on the workflow version",
                kind="step_mismatch",
            )
        send = domain.pending_send(
            step,
            enrollment_id=due.enrollment_id,
            record=due.record,
            message_id_domain=self._message_id_domain,
            default_sender=self._default_sender,
            cause_message_id=event.message_id,
            correlation_id=event.correlation_id or event.message_id,
        )
        # Due times are compared with the sender's clock, so they are set by ours, not the
        # database's: a skew between the two would otherwise delay every send.
        if not await store.add_pending_send(send, now=self._clock()):
            log.info(
                "send_already_queued",
                enrollment_id=str(due.enrollment_id),
                step_index=due.step_index,
            )
            return
        await store.wake_senders()
        log.info(
            "send_queued",
            enrollment_id=str(due.enrollment_id),
            step_index=due.step_index,
            provider_message_id=send.provider_message_id,
        )

    async def enrollment_changed(self, uow: UnitOfWork, event: EnrollmentEvent) -> None:
        """Project the enrollment's status; the sender re-checks it at send time.

        Locking the projection row waits for a sender that is sending to this enrollment:
        the change commits after those sends, and every later claim sees it.
        """
        store = self._store(uow)
        payload = event.payload
        current = await store.enrollment_for_update(payload.enrollment_id)
        if current is not None and current.account_id != event.account_id:
            raise RejectedMessageError(
                f"enrollment {payload.enrollment_id} belongs to another account",
                kind="account_mismatch",
            )
        change = domain.EnrollmentChange(event.type)
        status = domain.next_status(current.status if current else None, change)
        recipient = current.recipient_email if current else None
        if isinstance(event, EnrollmentEnrolled) and event.payload.contact is not None:
            recipient = event.payload.contact.email or recipient
        await store.save_enrollment(
            domain.EnrollmentView(
                enrollment_id=payload.enrollment_id,
                account_id=event.account_id,
                workflow_id=payload.workflow_id,
                workflow_version=payload.workflow_version,
                record=payload.record,
                status=status,
                recipient_email=recipient,
            )
        )
        if change is domain.EnrollmentChange.RESUMED and status is domain.EnrollmentStatus.ACTIVE:
            # A step cancelled for the pause was never sent and the enrollment still waits
            # on it (its timer had already fired, so no new step.due is coming): send it now.
            rearmed = await store.rearm_paused_sends(payload.enrollment_id, now=self._clock())
            if rearmed:
                await store.wake_senders()
                log.info("paused_sends_requeued", count=rearmed)
        log.info(
            "enrollment_projected",
            enrollment_id=str(payload.enrollment_id),
            change=change.value,
            status=status.value,
        )


def build_handlers(
    store_factory: StoreFactory,
    *,
    message_id_domain: str,
    default_sender: str,
    clock: Callable[[], datetime] = utc_now,
) -> Mapping[str, Handler]:
    """The subscribers' handlers over ``store_factory`` (a fake one in tests)."""
    return MessagingHandlers(
        store_factory,
        message_id_domain=message_id_domain,
        default_sender=default_sender,
        clock=clock,
    ).handlers()
