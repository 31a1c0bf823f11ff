"""Enrollment subscribers: commands and sends in, enrollment and workflow events out.

Every handler reads the same way. Load: what the whole run needs, one query per kind.
Decide: message by message with the pure ``domain`` (a later message sees what an earlier
one changed). Save: in bulk, one statement per kind. Then write the decisions' history and
publish their messages (``recording``). ``now`` is the run's one clock reading.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeGuard, TypeVar

from services.enrollment import answers, domain, exits, lifecycle, pauses, steps
from services.enrollment.admission import admit, bulk_enroll, enroll
from services.enrollment.config import EnrollmentSettings
from services.enrollment.dispatch_handlers import GrantSteps, RenewGrants, StepsUnsent
from services.enrollment.errors import MissingWorkflowVersionError
from services.enrollment.lifecycle_handlers import bulk_exit, change_status, reorder
from services.enrollment.migration_handlers import migrate
from services.enrollment.owner_handlers import remove_owner, set_owner_removal, users_changed
from services.enrollment.ports import (
    EnrollmentKey,
    EnrollmentStore,
    RecordKey,
    VersionKey,
)
from services.enrollment.recording import key as _key
from services.enrollment.recording import record, save_changes
from services.enrollment.recording import version_key as _version_key
from services.enrollment.restore_handlers import bulk_restore, restore_one
from services.enrollment.rules_handlers import set_exclusivity
from shared.consumer import Handler
from shared.contracts.commands import (
    ApplyWorkflow,
    BulkEnroll,
    BulkExit,
    BulkRestore,
    DeleteWorkflow,
    Enroll,
    Exit,
    Pause,
    PauseWorkflow,
    RemoveOwner,
    ReorderWorkflows,
    Restore,
    Resume,
    ResumeWorkflow,
    SetOwnerRemoval,
)
from shared.contracts.enrollment_rules import SetExclusivity
from shared.contracts.events import (
    MessageCancelled,
    MessageDeferred,
    MessageFailed,
    MessageSent,
    StepDue,
)
from shared.contracts.inbound import UserChanged
from shared.contracts.migration import MigrateWorkflow
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]
RecordCommand = Exit | Pause | Resume
C = TypeVar("C", bound=RecordCommand)
D = TypeVar("D", bound=exits.Exited | exits.ExitPending | pauses.Paused | pauses.Resumed)


class _LiveEnrollments:
    """The live enrollments of the records a run of commands is about, kept current, and
    the ended ones of commands that name no live one (for their answer)."""

    def __init__(self, loaded: Sequence[domain.Enrollment]) -> None:
        self.by_id: dict[EnrollmentKey, domain.Enrollment] = {}
        self._by_record: dict[RecordKey, list[EnrollmentKey]] = defaultdict(list)
        self._add(loaded)

    def _add(self, loaded: Sequence[domain.Enrollment]) -> None:
        for enrollment in loaded:
            if _key(enrollment) not in self.by_id:
                self._by_record[(enrollment.account_id, enrollment.record)].append(_key(enrollment))
            self.by_id[_key(enrollment)] = enrollment

    @staticmethod
    async def load(store: EnrollmentStore, commands: Sequence[RecordCommand]) -> _LiveEnrollments:
        records = [(c.account_id, c.payload.record) for c in commands]
        live = _LiveEnrollments(await store.live_enrollments_for_update(records))
        untargeted = [
            (c.account_id, c.payload.workflow_id, c.payload.record)
            for c in commands
            if c.payload.workflow_id is not None and not live.targets(c)
        ]
        live._add(await store.enrollments_in_workflows_for_update(untargeted))
        return live

    def versions(self) -> list[VersionKey]:
        return [_version_key(e) for e in self.by_id.values() if e.status.live]

    def _named(self, command: RecordCommand) -> list[domain.Enrollment]:
        payload = command.payload
        found = (self.by_id[i] for i in self._by_record[(command.account_id, payload.record)])
        return [
            e
            for e in found
            if payload.workflow_id in (None, e.workflow_id)
            and payload.enrollment_id in (None, e.enrollment_id)
        ]

    def targets(self, command: RecordCommand) -> list[domain.Enrollment]:
        return [e for e in self._named(command) if e.status.live]

    def _no_target(self, command: RecordCommand) -> answers.Answer:
        ended = [e for e in self._named(command) if not e.status.live]
        latest = max(ended, key=lambda e: (e.enrolled_at, e.enrollment_id), default=None)
        payload = command.payload
        return answers.no_live_enrollment(command, payload.record, payload.workflow_id, latest)

    def decide(
        self, commands: Sequence[C], decide: Callable[[domain.Enrollment, C], D | domain.Unchanged]
    ) -> list[tuple[D | answers.Answer, C]]:
        """Decide, command by command, for every live enrollment each one names: a later
        command sees what an earlier one changed. What changed nothing is answered."""
        decided: list[tuple[D | answers.Answer, C]] = []
        for command in commands:
            targets = self.targets(command)
            if not targets:
                decided.append((self._no_target(command), command))
            for enrollment in targets:
                decision = decide(enrollment, command)
                if isinstance(decision, domain.Unchanged):
                    log.info(
                        "enrollment_unchanged",
                        command=command.type,
                        enrollment_id=str(enrollment.enrollment_id),
                        why=decision.why,
                    )
                    decided.append((answers.unchanged(command, enrollment, decision), command))
                    continue
                self.by_id[_key(decision.enrollment)] = decision.enrollment
                decided.append((decision, command))
        return decided


def _changed(
    decision: pauses.Paused | pauses.Resumed | answers.Answer,
) -> TypeGuard[pauses.Paused | pauses.Resumed]:
    return not isinstance(decision, answers.Answer)


async def apply_workflows(uow: Uow, commands: list[ApplyWorkflow], now: datetime) -> None:
    """Each changed definition becomes its workflow's next version; the enrolls parked
    for it are then decided."""
    heads = await uow.store.workflow_heads(
        [(c.account_id, c.payload.definition.workflow_id) for c in commands]
    )
    statuses = await uow.store.workflow_statuses(list(heads))
    decided: list[tuple[domain.VersionApplied | answers.Answer, ApplyWorkflow]] = []
    for command in commands:
        definition = command.payload.definition
        key = (command.account_id, definition.workflow_id)
        decision = lifecycle.deleted_stays_deleted(statuses.get(key)) or domain.decide_apply(
            heads.get(key),
            account_id=command.account_id,
            definition=definition,
            actor=command.payload.actor,
        )
        if isinstance(decision, domain.Unchanged):
            log.info("workflow_unchanged", workflow_id=definition.workflow_id)
            answer = answers.refused(
                command, decision.code, decision.why, workflow_id=definition.workflow_id
            )
            decided.append((answer, command))
            continue
        heads[key] = (decision.version, decision.definition_hash)
        decided.append((decision, command))
        log.info("workflow_applied", workflow_id=definition.workflow_id, version=decision.version)
    versions = [d for d, _ in decided if isinstance(d, domain.VersionApplied)]
    await uow.store.add_workflow_versions(versions)
    await record(uow, decided, now)
    # Enrolls read before their workflow was: enrolled now, in this transaction.
    applied = [(d.account_id, d.definition.workflow_id) for d in versions]
    await uow.store.lock_workflows(applied)
    parked = await uow.store.take_parked(applied)
    if parked:
        log.info("parked_enrolls_released", count=len(parked))
    await admit(uow, parked, now)


async def exit(uow: Uow, commands: list[Exit], now: datetime) -> None:
    """End the live enrollments each command names, once; a workflow may keep agents from
    stopping it."""
    live = await _LiveEnrollments.load(uow.store, commands)
    versions = await uow.store.workflow_versions(live.versions())

    def decide(
        enrollment: domain.Enrollment, command: Exit
    ) -> exits.Exited | exits.ExitPending | domain.Unchanged:
        workflow = versions.get(_version_key(enrollment))
        payload = command.payload
        return exits.decide_exit(
            enrollment,
            reason=payload.reason,
            source=payload.source,
            actor=payload.actor,
            triggering_event=payload.triggering_event,
            agents_may_stop=workflow.definition.settings.agents_may_stop if workflow else True,
            now=now,
        )

    decided = live.decide(commands, decide)
    await save_changes(
        uow.store, [d for d, _ in decided if isinstance(d, exits.Exited | exits.ExitPending)]
    )
    await record(uow, decided, now)
    waiting = [d for d, _ in decided if isinstance(d, exits.ExitPending)]
    for pending in waiting:
        log.info(
            "exit_waits_for_send",
            enrollment_id=str(pending.enrollment.enrollment_id),
            step_index=pending.dispatch.step_index,
            dispatch_id=str(pending.dispatch.dispatch_id),
        )
    exited = sum(isinstance(d, exits.Exited) for d, _ in decided)
    log.info("exit_run", commands=len(commands), exited=exited, pending=len(waiting))


async def pause(uow: Uow, commands: list[Pause], now: datetime) -> None:
    """Hold the active enrollments each command names at their current step; a pause
    with ``until`` is stored with it, and the scheduler resumes it then."""
    live = await _LiveEnrollments.load(uow.store, commands)
    decided = live.decide(
        commands,
        lambda enrollment, command: pauses.decide_pause(
            enrollment,
            until=command.payload.until,
            reason=command.payload.reason,
            actor=command.payload.actor,
            pause_id=domain.pause_id_for(
                command.account_id, command.message_id, enrollment.enrollment_id
            ),
        ),
    )
    await uow.store.save_progress([d.enrollment for d, _ in decided if _changed(d)])
    await record(uow, decided, now)


async def resume(uow: Uow, commands: list[Resume], now: datetime) -> None:
    """Resume the paused enrollments each command names and schedule their current step
    (the scheduler's resume names the pause it ends: see ``pauses.decide_resume``)."""
    live = await _LiveEnrollments.load(uow.store, commands)
    versions = await uow.store.workflow_versions(live.versions())
    decided = live.decide(
        commands,
        lambda enrollment, command: pauses.decide_resume(
            enrollment,
            versions.get(_version_key(enrollment)),
            actor=command.payload.actor,
            now=now,
            pause_id=command.payload.pause_id,
        ),
    )
    await uow.store.save_progress([d.enrollment for d, _ in decided if _changed(d)])
    await record(uow, decided, now)


async def step_sent(uow: Uow, events: list[MessageSent], now: datetime) -> None:
    """A sent step is completed: the next one is scheduled, or the enrollment completes."""
    loaded = await uow.store.enrollments_for_update(
        [(e.account_id, e.payload.enrollment_id) for e in events]
    )
    state = {_key(e): e for e in loaded}
    versions = await uow.store.workflow_versions([_version_key(e) for e in loaded])
    decided: list[tuple[steps.ScheduleNext | steps.Complete | exits.Exited, MessageSent]] = []
    for event in events:
        sent = event.payload
        enrollment = state.get((event.account_id, sent.enrollment_id))
        if enrollment is None:
            log.warning("sent_for_unknown_enrollment", enrollment_id=str(sent.enrollment_id))
            continue
        workflow = versions.get(_version_key(enrollment))
        if workflow is None:
            raise MissingWorkflowVersionError(enrollment.account_id, enrollment.enrollment_id)
        decision = steps.on_step_sent(
            enrollment,
            workflow.definition,
            exits.SentStep(sent.step_index, sent.step_id, sent.provider_message_id, sent.sent_at),
            now=now,
        )
        if isinstance(decision, domain.Unchanged):
            log.info("step_sent_ignored", enrollment_id=str(sent.enrollment_id), why=decision.why)
            continue
        state[_key(enrollment)] = decision.enrollment
        decided.append((decision, event))
    await save_changes(uow.store, [d for d, _ in decided])
    await record(uow, decided, now)


def build_handlers(settings: EnrollmentSettings) -> Mapping[str, Handler]:
    # One handler per type: a run of one type is applied at once, and runs follow each
    # other in order, so mixed commands still apply as if one by one.
    lease = timedelta(seconds=settings.dispatch_lease_s)
    unsent = StepsUnsent(lease)
    return {
        StepDue.TYPE: GrantSteps(lease),
        MessageDeferred.TYPE: RenewGrants(lease),
        ApplyWorkflow.TYPE: apply_workflows,
        Enroll.TYPE: enroll,
        BulkEnroll.TYPE: bulk_enroll,
        Exit.TYPE: exit,
        Pause.TYPE: pause,
        Resume.TYPE: resume,
        MessageSent.TYPE: step_sent,
        # One handler for both outcomes: a mixed stream of them is one run.
        MessageFailed.TYPE: unsent,
        MessageCancelled.TYPE: unsent,
        # Workflow lifecycle and recovery (lifecycle_handlers, restore_handlers).
        PauseWorkflow.TYPE: change_status,
        ResumeWorkflow.TYPE: change_status,
        DeleteWorkflow.TYPE: change_status,
        ReorderWorkflows.TYPE: reorder,
        BulkExit.TYPE: bulk_exit,
        Restore.TYPE: restore_one,
        BulkRestore.TYPE: bulk_restore,
        SetOwnerRemoval.TYPE: set_owner_removal,
        SetExclusivity.TYPE: set_exclusivity,
        RemoveOwner.TYPE: remove_owner,
        UserChanged.TYPE: users_changed,
        MigrateWorkflow.TYPE: migrate,
    }
