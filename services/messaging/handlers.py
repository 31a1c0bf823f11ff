"""Messaging subscribers: keep the projections and queue due steps for the sender.

They run in the pipeline's batch transaction and never call a provider: a due step only
becomes a ``pending`` row here; ``sender`` re-checks the enrollment and sends it after this
transaction commits (the NOTIFY written here wakes it then).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from services.messaging import domain
from services.messaging.errors import StepMismatchError, UnknownWorkflowStepError
from services.messaging.ports import MessagingStore, StepKey, StoreFactory
from shared.consumer import Batched
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
from shared.uow import UnitOfWork

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

    def _store(self, uow: UnitOfWork[Any]) -> MessagingStore:
        return self._store_factory(uow.conn)

    def handlers(self) -> Mapping[str, Batched]:
        """Message type -> handler, for ``ServiceSpec.handlers``.

        Each takes a run of consecutive messages at once; the five enrollment events share
        one handler, so a stream mixing them is still one run.
        """
        enrollment_changed = Batched(self.enrollments_changed)
        return {
            WorkflowApplied.TYPE: Batched(self.workflows_applied),
            StepDue.TYPE: Batched(self.steps_due),
            EnrollmentEnrolled.TYPE: enrollment_changed,
            EnrollmentPaused.TYPE: enrollment_changed,
            EnrollmentResumed.TYPE: enrollment_changed,
            EnrollmentCompleted.TYPE: enrollment_changed,
            EnrollmentExited.TYPE: enrollment_changed,
        }

    async def workflows_applied(self, uow: UnitOfWork[Any], events: list[WorkflowApplied]) -> None:
        """Keep the steps of the new versions: due steps are rendered from them."""
        steps: dict[StepKey, domain.WorkflowStep] = {}
        for event in events:
            definition = event.payload.definition
            for index, step in enumerate(definition.steps):
                key = (event.account_id, definition.workflow_id, event.payload.version, index)
                # A version applied twice in the run: the first one's steps are kept.
                steps.setdefault(
                    key,
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
                    ),
                )
            log.info(
                "workflow_steps_saved",
                workflow_id=definition.workflow_id,
                version=event.payload.version,
                steps=len(definition.steps),
            )
        await self._store(uow).save_workflow_steps(list(steps.values()))

    async def steps_due(self, uow: UnitOfWork[Any], events: list[StepDue]) -> None:
        """Queue each step as a pending send; a step is queued at most once per enrollment.

        One lookup of the run's steps, one insert of its sends, one NOTIFY.
        """
        store = self._store(uow)
        steps = await store.workflow_steps({_step_key(event) for event in events})
        sends: dict[domain.SendKey, domain.Send] = {}
        for event in events:
            send = self._pending_send(event, steps.get(_step_key(event)))
            # A step due twice in the run: only the first can be queued, the second finds
            # it pending (or as the first found it).
            sends.setdefault(send.key, send)
        # Due times are compared with the sender's clock, so they are set by ours, not the
        # database's: a skew between the two would otherwise delay every send.
        queued = await store.add_pending_sends(list(sends.values()), now=self._clock())
        if queued:
            await store.wake_senders()
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

    def _pending_send(self, event: StepDue, step: domain.WorkflowStep | None) -> domain.Send:
        due = event.payload
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
        return domain.pending_send(
            step,
            enrollment_id=due.enrollment_id,
            record=due.record,
            message_id_domain=self._message_id_domain,
            default_sender=self._default_sender,
            cause_message_id=event.message_id,
            correlation_id=event.correlation_id or event.message_id,
        )

    async def enrollments_changed(
        self, uow: UnitOfWork[Any], events: list[EnrollmentEvent]
    ) -> None:
        """Project the enrollments' status; the sender re-checks it at send time.

        Locking the projection rows waits for a sender that is sending to one of these
        enrollments: the change commits after those sends, and every later claim sees it.
        The run is folded in order in memory (each event sees what the earlier ones made of
        its enrollment), then saved at once: one lock, one upsert, at most one re-queue of
        paused sends and one NOTIFY per run.
        """
        store = self._store(uow)
        views = await store.enrollments_for_update(
            {(e.account_id, e.payload.enrollment_id) for e in events}
        )
        changed: dict[domain.EnrollmentKey, domain.EnrollmentView] = {}
        resumed: list[domain.EnrollmentKey] = []
        for event in events:
            enrollment_id = event.payload.enrollment_id
            # Keyed by account as well: another account's enrollment with the same id is
            # another row, never this one.
            key = (event.account_id, enrollment_id)
            change = domain.EnrollmentChange(event.type)
            view = _projected(views.get(key), event, change)
            views[key] = changed[key] = view
            if (
                change is domain.EnrollmentChange.RESUMED
                and view.status is domain.EnrollmentStatus.ACTIVE
            ):
                # A step cancelled for the pause was never sent and the enrollment still
                # waits on it (its timer had already fired, so no new step.due is coming):
                # send it now. Later events of the run only change the projection, which
                # the sender re-checks, so re-queueing after the whole run is the same.
                resumed.append(key)
            log.info(
                "enrollment_projected",
                enrollment_id=str(enrollment_id),
                change=change.value,
                status=view.status.value,
            )
        await store.save_enrollments(list(changed.values()))
        if resumed:
            rearmed = await store.rearm_paused_sends(resumed, now=self._clock())
            if rearmed:
                await store.wake_senders()
                log.info("paused_sends_requeued", count=rearmed)


def _step_key(event: StepDue) -> StepKey:
    due = event.payload
    return (event.account_id, due.workflow_id, due.workflow_version, due.step_index)


def _projected(
    current: domain.EnrollmentView | None, event: EnrollmentEvent, change: domain.EnrollmentChange
) -> domain.EnrollmentView:
    """The projection row after ``event``. An existing row keeps what it was created with
    (the upsert updates only status and recipient)."""
    status = domain.next_status(current.status if current else None, change)
    recipient = current.recipient_email if current else None
    if isinstance(event, EnrollmentEnrolled) and event.payload.contact is not None:
        recipient = event.payload.contact.email or recipient
    if current is not None:
        return replace(current, status=status, recipient_email=recipient)
    payload = event.payload
    return domain.EnrollmentView(
        enrollment_id=payload.enrollment_id,
        account_id=event.account_id,
        workflow_id=payload.workflow_id,
        workflow_version=payload.workflow_version,
        record=payload.record,
        status=status,
        recipient_email=recipient,
    )


def build_handlers(
    store_factory: StoreFactory,
    *,
    message_id_domain: str,
    default_sender: str,
    clock: Callable[[], datetime] = utc_now,
) -> Mapping[str, Batched]:
    """The subscribers' handlers over ``store_factory`` (a fake one in tests)."""
    return MessagingHandlers(
        store_factory,
        message_id_domain=message_id_domain,
        default_sender=default_sender,
        clock=clock,
    ).handlers()
