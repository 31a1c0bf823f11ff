"""Enrollment subscribers of restores: one exited enrollment (``enrollment.restore``) or
every exit of a workflow a reason or time range picks (``enrollment.bulk_restore``),
previewed by a dry run first. Each enrollment is answered: restored, or refused and why."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from services.enrollment import answers, domain, restore, screening
from services.enrollment.cap_gate import CapGate
from services.enrollment.exclusivity_gate import ExclusivityGate
from services.enrollment.ports import EnrollmentKey, EnrollmentStore, WorkflowRecordKey
from services.enrollment.recording import record, version_key
from shared.contracts import SYSTEM_ACTOR, Actor, Message
from shared.contracts.commands import BulkRestore, Enroll, EnrollPayload, Restore
from shared.contracts.events import (
    Rejection,
)
from shared.contracts.lifecycle_events import (
    RestoreCandidate,
    RestorePreviewed,
    RestorePreviewedPayload,
)
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]
Decided = list[tuple[restore.Restored | answers.Answer, Message]]


def as_enrolls(
    exits: Sequence[restore.Exit], audiences: Mapping[EnrollmentKey, str]
) -> list[Enroll]:
    """Each exit as the enroll its restore amounts to (its id the old enrollment's)."""
    return [
        Enroll.create(
            message_id=x.enrollment.enrollment_id,
            account_id=x.enrollment.account_id,
            payload=EnrollPayload(
                workflow_id=x.enrollment.workflow_id,
                record=x.enrollment.record,
                contact=x.contact,
                actor=SYSTEM_ACTOR,
                audience_id=audiences.get((x.enrollment.account_id, x.enrollment.enrollment_id)),
            ),
        )
        for x in exits
    ]


async def blocking_exclusions(
    uow: Uow, exits: Sequence[restore.Exit], now: datetime
) -> dict[EnrollmentKey, Rejection]:
    """The first exclusion rule that would reject each exit's record if it were enrolled
    now (a restore obeys every active exclusion, as an enroll does), by (account, old
    enrollment id): each exit is screened as the enroll it amounts to."""
    if not exits:
        return {}
    olds = [x.enrollment for x in exits]
    audiences = await uow.store.audiences_of([(e.account_id, e.enrollment_id) for e in olds])
    as_enrolls_ = as_enrolls(exits, audiences)
    rejected = await screening.screen_enrolls(uow.store, as_enrolls_, now)
    return {
        (old.account_id, old.enrollment_id): found[0]
        for old in olds
        if (found := rejected.get(old.enrollment_id))
    }


async def _decide(
    uow: Uow, pairs: Sequence[tuple[restore.Exit, Message, Actor]], now: datetime
) -> Decided:
    """Decide the restore of each exit, in order: a later one sees an earlier one's."""
    olds = [x.enrollment for x, _, _ in pairs]
    versions = await uow.store.workflow_versions([version_key(e) for e in olds])
    statuses = await uow.store.workflow_statuses([(e.account_id, e.workflow_id) for e in olds])
    # As an enroll: the account's exclusivity rule and the workflow's daily cap (a
    # restore over the cap is refused, not parked: the requester restores it later).
    enrolls = as_enrolls([x for x, _, _ in pairs], {})
    by_workflow = {
        (e.account_id, e.workflow_id): v for e in olds if (v := versions.get(version_key(e)))
    }
    gate = await CapGate.load(uow.store, enrolls, by_workflow, now, released=True)
    rules = await ExclusivityGate.load(uow.store, enrolls, by_workflow)
    live: set[WorkflowRecordKey] = {
        (e.account_id, e.workflow_id, e.record)
        for e in await uow.store.enrollments_in_workflows_for_update(
            [(e.account_id, e.workflow_id, e.record) for e in olds]
        )
        if e.status.live
    }
    blocked = await blocking_exclusions(uow, [x for x, _, _ in pairs], now)
    restored_as: dict[EnrollmentKey, uuid.UUID] = {}
    decided: Decided = []
    for (exit, command, actor), as_enroll in zip(pairs, enrolls, strict=True):
        old = exit.enrollment
        key = (old.account_id, old.workflow_id, old.record)
        done = restored_as.get((old.account_id, old.enrollment_id))
        decision = restore.decide_restore(
            exit if done is None else restore.Exit(old, exit.contact, done),
            version=versions.get(version_key(old)),
            workflow_status=statuses.get((old.account_id, old.workflow_id)),
            live_in_workflow=key in live,
            blocked_by=blocked.get((old.account_id, old.enrollment_id)),
            exclusivity=next(iter(rules.rejections(as_enroll)), None),
            enrollment_id=restore.restored_id_for(
                old.account_id, command.message_id, old.enrollment_id
            ),
            actor=actor,
            now=now,
        )
        if isinstance(decision, restore.Restored) and (deferred := gate.defer(as_enroll, {}, now)):
            decision = restore.over_cap(deferred.cap)
        if isinstance(decision, domain.Unchanged):
            log.info("restore_refused", enrollment_id=str(old.enrollment_id), why=decision.why)
            decided.append((answers.unchanged(command, old, decision), command))
            continue
        live.add(key)
        rules.admitted(as_enroll)
        restored_as[(old.account_id, old.enrollment_id)] = decision.enrollment.enrollment_id
        decided.append((decision, command))
    return decided


async def _save(uow: Uow, decided: Decided, now: datetime) -> None:
    await uow.store.save_restores([d for d, _ in decided if isinstance(d, restore.Restored)])
    await record(uow, decided, now)


async def restore_one(uow: Uow, commands: list[Restore], now: datetime) -> None:
    """Restore the exited enrollment each command names."""
    found = {
        (x.enrollment.account_id, x.enrollment.enrollment_id): x
        for x in await uow.store.exits_for_update(
            [(c.account_id, c.payload.enrollment_id) for c in commands]
        )
    }
    pairs: list[tuple[restore.Exit, Message, Actor]] = []
    decided: Decided = []
    for command in commands:
        exit = found.get((command.account_id, command.payload.enrollment_id))
        if exit is None or exit.enrollment.record != command.payload.record:
            why = "no such enrollment of this record in this account"
            answer = answers.refused(
                command,
                "not_enrolled",
                why,
                record=command.payload.record,
                enrollment_id=command.payload.enrollment_id,
            )
            decided.append((answer, command))
            continue
        pairs.append((exit, command, command.payload.actor))
    # Unknown enrollments are answered first, then the rest in order (as alone: each
    # command is either one or the other).
    decided += await _decide(uow, pairs, now)
    await _save(uow, _in_command_order(decided, commands), now)


def _in_command_order(decided: Decided, commands: Sequence[Message]) -> Decided:
    order = {c.message_id: n for n, c in enumerate(commands)}
    return sorted(decided, key=lambda d: order[d[1].message_id])


async def bulk_restore(uow: Uow, commands: list[BulkRestore], now: datetime) -> None:
    """Restore, or preview the restore of, the exits each command's filters pick (one
    command at a time: each sees what the one before restored)."""
    for command in commands:
        payload = command.payload
        exits = await uow.store.exits_in_workflow_for_update(
            (command.account_id, payload.workflow_id),
            reason=payload.reason,
            exited_from=payload.exited_from,
            exited_until=payload.exited_until,
            limit=payload.limit,
            rule_id=payload.rule_id,
            rule_version=payload.rule_version,
        )
        outcome = await _decide(uow, [(x, command, payload.actor) for x in exits], now)
        if payload.dry_run:
            uow.publish(_preview(command, exits, outcome))
            continue
        if not exits:
            why = "no exit matches the filters"
            answer = answers.refused(
                command, "nothing_to_restore", why, workflow_id=payload.workflow_id
            )
            outcome.append((answer, command))
        await _save(uow, outcome, now)


def _preview(
    command: BulkRestore, exits: Sequence[restore.Exit], outcome: Decided
) -> RestorePreviewed:
    candidates = []
    for exit, (decision, _) in zip(exits, outcome, strict=True):
        old = exit.enrollment
        candidates.append(
            RestoreCandidate(
                enrollment_id=old.enrollment_id,
                record=old.record,
                exit_reason=old.exit_reason,
                step_index=restore.next_step_index(old),
                refused=decision.code if isinstance(decision, answers.Answer) else None,
            )
        )
    refused = sum(c.refused is not None for c in candidates)
    payload = RestorePreviewedPayload(
        workflow_id=command.payload.workflow_id,
        would_restore=len(candidates) - refused,
        would_refuse=refused,
        candidates=tuple(candidates),
    )
    return RestorePreviewed.create(
        message_id=domain.event_id(
            "restore_preview", command.account_id, command.message_id, command.payload.workflow_id
        ),
        account_id=command.account_id,
        caused_by=command,
        payload=payload,
    )
