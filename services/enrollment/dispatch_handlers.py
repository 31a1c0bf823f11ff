"""Enrollment subscribers of step dispatch: ``step.due`` is granted, ``message.deferred``
renews the grant, ``message.failed`` and ``message.cancelled`` settle it (see
``dispatch`` for why enrollment, not messaging, decides).

Each takes a whole run and applies it with a fixed number of statements: one locked load
of the run's enrollments, one save (two when an exit commits), the history, the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from services.enrollment import dispatch, domain, exits, steps
from services.enrollment.errors import MissingWorkflowVersionError
from services.enrollment.ports import EnrollmentKey, EnrollmentStore, VersionKey
from services.enrollment.recording import Change, key, record, save_changes, version_key
from services.enrollment.screening import excluded_at_send, exit_excluded, trigger_of
from shared.contracts import topics
from shared.contracts.commands import TriggeringEvent
from shared.contracts.events import MessageCancelled, MessageDeferred, MessageFailed, StepDue
from shared.contracts.workflow import WorkflowDefinition
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]


SendOutcome = MessageFailed | MessageCancelled


E = TypeVar("E", StepDue, MessageDeferred, SendOutcome)
D = TypeVar("D", bound=Change)


async def _definitions(
    uow: Uow, events: Sequence[StepDue | MessageDeferred]
) -> dict[VersionKey, WorkflowDefinition]:
    """The workflow versions the events' enrollments are in (their send windows): one
    cached lookup."""
    keys = {(e.account_id, e.payload.workflow_id, e.payload.workflow_version) for e in events}
    versions = await uow.store.workflow_versions(list(keys))
    return {k: v.definition for k, v in versions.items()}


async def _decide_each(
    uow: Uow,
    events: Sequence[E],
    decide: Callable[[domain.Enrollment, E], D | domain.Unchanged],
    *,
    unchanged: str,
) -> list[tuple[D, E]]:
    """Lock the run's enrollments (one statement), then decide event by event: a later
    event sees what an earlier one changed. Unchanged ones are logged as ``unchanged``."""
    loaded = await uow.store.enrollments_for_update(
        [(e.account_id, e.payload.enrollment_id) for e in events]
    )
    state: dict[EnrollmentKey, domain.Enrollment] = {key(e): e for e in loaded}
    decided: list[tuple[D, E]] = []
    for event in events:
        enrollment_id = event.payload.enrollment_id
        enrollment = state.get((event.account_id, enrollment_id))
        if enrollment is None:
            log.warning(
                "event_for_unknown_enrollment", type=event.type, enrollment_id=str(enrollment_id)
            )
            continue
        decision = decide(enrollment, event)
        if isinstance(decision, domain.Unchanged):
            log.info(
                unchanged,
                enrollment_id=str(enrollment_id),
                step_index=event.payload.step_index,
                why=decision.why,
            )
            continue
        state[key(enrollment)] = decision.enrollment
        decided.append((decision, event))
    return decided


class GrantSteps:
    """The ``step.due`` handler: grant each due step to its enrollment, at most once."""

    def __init__(self, lease: timedelta) -> None:
        self._lease = lease

    async def __call__(self, uow: Uow, events: list[StepDue], now: datetime) -> None:
        definitions = await _definitions(uow, events)

        def decide(
            enrollment: domain.Enrollment, event: StepDue
        ) -> dispatch.Granted | dispatch.Rescheduled | domain.Unchanged:
            due = event.payload
            return dispatch.decide_grant(
                enrollment,
                dispatch.DueStep(due.step_index, due.step_id, due.channel, due.due_at),
                dispatch_id=dispatch.dispatch_id_for(
                    event.account_id, event.message_id, due.enrollment_id
                ),
                lease=self._lease,
                now=now,
                definition=definitions.get(version_key(enrollment)),
            )

        planned: list[tuple[Planned, StepDue]] = await _decide_each(
            uow, events, decide, unchanged="step_not_granted"
        )
        decided = await _screened(uow, planned, now)
        await save_changes(uow.store, [d for d, _ in decided])
        await record(uow, decided, now)
        granted = sum(isinstance(d, dispatch.Granted) for d, _ in decided)
        replanned = sum(isinstance(d, dispatch.Rescheduled) for d, _ in decided)
        log.info("grant_run", due=len(events), granted=granted, replanned=replanned)


Renewal = dispatch.Granted | dispatch.Rescheduled | exits.Exited | steps.Settled


Planned = dispatch.Granted | dispatch.Rescheduled


async def _screened(
    uow: Uow, planned: list[tuple[Planned, StepDue]], now: datetime
) -> list[tuple[Planned | exits.Exited, StepDue]]:
    """Grants whose record a *remove* exclusion rule matches now become that exit instead:
    the send-time re-check, for a rule that started to hold with time alone (``within_days``,
    ``older_than_days``) and so had no event to act on. One rule lookup per run; the
    records' data only when the account has a remove rule."""
    granted = [d for d, _ in planned if isinstance(d, dispatch.Granted)]
    if not granted:
        return list(planned)
    before = {key(d.enrollment): replace(d.enrollment, dispatch=None) for d in granted}
    found = await excluded_at_send(uow.store, list(before.values()), now)
    hits = {key(enrollment): hit for enrollment, hit in found}
    if not hits:
        return list(planned)
    out: list[tuple[Planned | exits.Exited, StepDue]] = []
    for decision, event in planned:
        hit = hits.get(key(decision.enrollment)) if isinstance(decision, dispatch.Granted) else None
        exited = None
        if hit is not None:
            cause = trigger_of(event, topics.SCHEDULER_STEPS)
            exited = exit_excluded(before[key(decision.enrollment)], hit, cause, now)
        if isinstance(exited, exits.Exited):
            log.info(
                "step_not_granted_excluded",
                enrollment_id=str(decision.enrollment.enrollment_id),
                rule_id=hit.rule_id if hit else None,
            )
            out.append((exited, event))
        else:
            out.append((decision, event))
    return out


class RenewGrants:
    """The ``message.deferred`` handler: a lapsed grant is renewed, or the exit that was
    waiting for it commits."""

    def __init__(self, lease: timedelta) -> None:
        self._lease = lease

    async def __call__(self, uow: Uow, events: list[MessageDeferred], now: datetime) -> None:
        definitions = await _definitions(uow, events)

        def decide(
            enrollment: domain.Enrollment, event: MessageDeferred
        ) -> Renewal | domain.Unchanged:
            deferred = event.payload
            return dispatch.decide_renewal(
                enrollment,
                dispatch.DueStep(
                    deferred.step_index,
                    deferred.step_id,
                    deferred.channel,
                    deferred.next_attempt_at,
                ),
                dispatch_id=deferred.dispatch_id,
                lapsed=deferred.lease_until,
                next_attempt_at=deferred.next_attempt_at,
                lease=self._lease,
                now=now,
                definition=definitions.get(version_key(enrollment)),
            )

        decided = await _decide_each(uow, events, decide, unchanged="grant_not_renewed")
        await save_changes(uow.store, [d for d, _ in decided])
        await record(uow, decided, now)


def _unsent(event: SendOutcome) -> exits.UnsentStep:
    if isinstance(event, MessageFailed):
        failed = event.payload
        return exits.UnsentStep(
            failed.step_index, failed.step_id, failed.kind, failed.reason, failed.dispatch_id
        )
    cancelled = event.payload
    why = f"messaging cancelled the send: {cancelled.reason.value}"
    return exits.UnsentStep(
        cancelled.step_index, cancelled.step_id, cancelled.reason, why, cancelled.dispatch_id
    )


def _trigger(event: SendOutcome) -> TriggeringEvent:
    return TriggeringEvent(
        message_id=event.message_id,
        type=event.type,
        topic=topics.MESSAGING_EVENTS,
        occurred_at=event.occurred_at,
    )


Unsent = exits.Exited | steps.Settled | dispatch.Granted | dispatch.Rescheduled


class StepsUnsent:
    """The ``message.failed`` / ``message.cancelled`` handler (one run for both)."""

    def __init__(self, lease: timedelta) -> None:
        self._lease = lease

    async def __call__(self, uow: Uow, events: list[SendOutcome], now: datetime) -> None:
        """A step that failed for good, or that no one can receive, exits its enrollment
        with the reason; an exit waiting for this step's outcome commits. A cancellation
        because the enrollment left or paused ends only the grant, and the step is granted
        again at once if the enrollment was resumed meanwhile (its resume found the grant
        still out and granted nothing)."""
        decided: list[tuple[Unsent, SendOutcome]]
        decided = list(
            await _decide_each(
                uow,
                events,
                lambda enrollment, event: steps.on_step_unsent(
                    enrollment, _unsent(event), trigger=_trigger(event), now=now
                ),
                unchanged="step_unsent_ignored",
            )
        )
        decided = await self._grant_again(uow, decided, now)
        await save_changes(uow.store, [d for d, _ in decided])
        await record(uow, decided, now)

    async def _grant_again(
        self,
        uow: Uow,
        decided: list[tuple[Unsent, SendOutcome]],
        now: datetime,
    ) -> list[tuple[Unsent, SendOutcome]]:
        """Grant the current step again to settled enrollments that are active (resumed
        while their cancelled grant was still out); one lookup, only when there are any."""
        active = [
            d.enrollment
            for d, _ in decided
            if isinstance(d, steps.Settled) and d.enrollment.status is domain.Status.ACTIVE
        ]
        if not active:
            return decided
        versions = await uow.store.workflow_versions([version_key(e) for e in active])
        out: list[tuple[Unsent, SendOutcome]] = []
        for decision, event in decided:
            enrollment = decision.enrollment
            if not isinstance(decision, steps.Settled) or enrollment.status is not (
                domain.Status.ACTIVE
            ):
                out.append((decision, event))
                continue
            workflow = versions.get(version_key(enrollment))
            if workflow is None:
                raise MissingWorkflowVersionError(enrollment.account_id, enrollment.enrollment_id)
            step = workflow.definition.steps[enrollment.current_step]
            granted = dispatch.decide_grant(
                enrollment,
                dispatch.DueStep(enrollment.current_step, step.step_id, step.channel, now),
                dispatch_id=dispatch.dispatch_id_for(
                    event.account_id, event.message_id, enrollment.enrollment_id
                ),
                lease=self._lease,
                now=now,
                definition=workflow.definition,
            )
            out.append((decision if isinstance(granted, domain.Unchanged) else granted, event))
        return out
