"""Messaging subscribers: keep the workflow versions and queue granted steps for the
sender; the other enrollment events (projection, revoked grants, ended enrollments) are in
``enrollment_changes``.

They run in the pipeline's batch transaction and never call a provider: a granted step
(``enrollment.step_granted``) only becomes a ``pending`` row here, under its grant;
``sender`` re-checks the enrollment and the grant's lease and sends it after this
transaction commits (the NOTIFY written here wakes it then). A granted step whose workflow
version has not arrived yet is parked, and queued by that version's ``workflow.applied``
(``parking``). Each handler takes a whole run of consecutive messages and applies it with a
fixed number of statements, exactly as if the messages were applied one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from services.messaging import balance, domain, messages, parking
from services.messaging.config import MessagingSettings
from services.messaging.delivery_reports import delivery_reported
from services.messaging.enrollment_changes import ENROLLMENT_CHANGES, enrollments_changed
from services.messaging.errors import StepMismatchError, UnknownWorkflowStepError
from services.messaging.parking import VersionKey
from services.messaging.ports import MessagingStore, StepKey
from shared.consumer import Handler
from shared.contracts.events import EnrollmentStepGranted, EnrollmentStepScheduled, WorkflowApplied
from shared.contracts.inbound import MessageDeliveryStatus
from shared.contracts.sms_balance import SMS_BALANCE_COMMANDS
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Rendering:
    """What a send is rendered with besides its step: the settings both handlers share."""

    message_id_domain: str
    default_sender: str

    def send(self, step: domain.WorkflowStep, event: EnrollmentStepGranted) -> domain.Send:
        return domain.pending_send(
            step,
            enrollment_id=event.payload.enrollment_id,
            record=event.payload.record,
            message_id_domain=self.message_id_domain,
            default_sender=self.default_sender,
            cause_message_id=event.message_id,
            correlation_id=event.correlation_id or event.message_id,
            dispatch_id=event.payload.dispatch_id,
            lease_until=event.payload.lease_until,
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
        await balance.refund_failed_parked(uow, failed, now)
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


class GrantedSteps:
    """The ``enrollment.step_granted`` handler, with the settings a rendered send needs."""

    def __init__(self, rendering: Rendering) -> None:
        self._rendering = rendering

    async def __call__(
        self,
        uow: UnitOfWork[MessagingStore],
        events: list[EnrollmentStepGranted],
        now: datetime,
    ) -> None:
        """Queue each step as a pending send under its grant; a step is queued at most once
        per enrollment, and a later grant of it (a renewal) only extends its lease.

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
                waiting = self._parked(event, now)
                parked[waiting.key] = _later_grant(parked.get(waiting.key), waiting)
                continue
            send = self._send_for(event, step)
            # A step granted twice in the run: the first is queued, under the later lease,
            # as the second would have renewed it one by one.
            sends[send.key] = _later_grant(sends.get(send.key), send)
        changed = await uow.store.add_pending_sends(list(sends.values()), now=now)
        if changed:
            await uow.store.wake_senders()
        newly_parked = await uow.store.park_steps(list(parked.values())) if parked else set()
        for event in events:
            granted = event.payload
            key = (event.account_id, granted.enrollment_id, granted.step_index)
            fields = {
                "enrollment_id": str(granted.enrollment_id),
                "step_index": granted.step_index,
                "dispatch_id": str(granted.dispatch_id),
                "lease_until": granted.lease_until.isoformat(),
                "renewal": granted.renewal,
            }
            if key in changed:
                log.info("send_granted", **fields)
            elif key in newly_parked:
                log.info(
                    "step_parked_until_workflow_applied",
                    workflow_id=granted.workflow_id,
                    workflow_version=granted.workflow_version,
                    **fields,
                )
            else:
                log.info("send_grant_changed_nothing", **fields)

    def _send_for(self, event: EnrollmentStepGranted, step: domain.WorkflowStep) -> domain.Send:
        granted = event.payload
        if not parking.matches(step, step_id=granted.step_id, channel=granted.channel):
            raise _mismatch(
                granted.workflow_id,
                granted.workflow_version,
                granted.step_index,
                (granted.step_id, granted.channel.value),
                step,
            )
        return self._rendering.send(step, event)

    def _parked(self, event: EnrollmentStepGranted, now: datetime) -> parking.ParkedStep:
        granted = event.payload
        return parking.ParkedStep(
            enrollment_id=granted.enrollment_id,
            step_index=granted.step_index,
            account_id=event.account_id,
            workflow_id=granted.workflow_id,
            workflow_version=granted.workflow_version,
            record=granted.record,
            step_id=granted.step_id,
            channel=granted.channel,
            provider_message_id=domain.provider_message_id(
                granted.enrollment_id, granted.step_index, self._rendering.message_id_domain
            ),
            parked_at=now,
            cause_message_id=event.message_id,
            correlation_id=event.correlation_id or event.message_id,
            dispatch_id=granted.dispatch_id,
            lease_until=granted.lease_until,
        )


G = TypeVar("G", domain.Send, parking.ParkedStep)


def _later_grant(first: G | None, again: G) -> G:
    """The first of two grants of one step in a run, under the later lease (a tie keeps
    the first's grant), as applying them one by one leaves the row."""
    if first is None:
        return again
    if first.lease_until is not None and (
        again.lease_until is None or again.lease_until <= first.lease_until
    ):
        return first
    return replace(first, dispatch_id=again.dispatch_id, lease_until=again.lease_until)


def _version_key(event: EnrollmentStepGranted) -> VersionKey:
    return (event.account_id, event.payload.workflow_id, event.payload.workflow_version)


def _step_key(event: EnrollmentStepGranted) -> StepKey:
    granted = event.payload
    return (event.account_id, granted.workflow_id, granted.workflow_version, granted.step_index)


def build_handlers(settings: MessagingSettings) -> Mapping[str, Handler]:
    """Message type -> handler, for ``ServiceSpec.handlers``.

    The enrollment events other than grants share one handler, so a stream mixing them is
    still one run; so do the SMS balance's commands (every other command on
    ``offramp.commands.v1`` is skipped: messaging has no handler for it).
    """
    rendering = Rendering(settings.message_id_domain, settings.default_sender)
    return {
        WorkflowApplied.TYPE: WorkflowsApplied(rendering),
        EnrollmentStepGranted.TYPE: GrantedSteps(rendering),
        **{change.TYPE: enrollments_changed for change in ENROLLMENT_CHANGES},
        MessageDeliveryStatus.TYPE: delivery_reported,
        EnrollmentStepScheduled.TYPE: balance.reserve_scheduled,
        **{command.TYPE: balance.balance_commands for command in SMS_BALANCE_COMMANDS},
    }
