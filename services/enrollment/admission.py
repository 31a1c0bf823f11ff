"""Admitting enrolls (``enrollment.enroll``, ``enrollment.bulk_enroll``): every enroll
is decided now (``enrollment.enrolled`` or ``enrollment.rejected`` with every reason), or
parked while its workflow is not applied; the parked enrolls' loop comes back here.

An ``anytime`` workflow's enroll of a live record restarts it (``reenrollment``): the
live enrollment exits (``reenrolled``) in the same transaction, before the new one is
inserted. The account's exclusivity rule (``exclusivity``) is decided under a lock per
record."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from services.enrollment import caps, domain, exits, lifecycle, screening
from services.enrollment.cap_gate import CapGate
from services.enrollment.exclusivity_gate import ExclusivityGate
from services.enrollment.ports import (
    EnrollmentStore,
    ParkedEnroll,
    WorkflowKey,
    WorkflowRecordKey,
)
from services.enrollment.recording import record, save_changes
from shared.contracts import derived_message_id
from shared.contracts.commands import BulkEnroll, Enroll, EnrollPayload, ExitReason, ExitSource
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]
Outcome = domain.Admitted | domain.Refused | caps.Deferred
"""What becomes of an enroll: admitted, refused, or waiting for the daily cap."""


async def enroll(uow: Uow, commands: list[Enroll], now: datetime) -> None:
    """Admit each record into its workflow's current version, or reject it with every
    reason; an enroll whose workflow is not applied yet is parked until it is."""
    keys = [(c.account_id, c.payload.workflow_id) for c in commands]
    workflows = await uow.store.current_workflows(keys)
    if missing := [k for k in dict.fromkeys(keys) if k not in workflows]:
        # Once the lock is ours, an apply that committed meanwhile is seen here; one that
        # commits after will find what we park (it takes the same lock).
        await uow.store.lock_workflows(missing)
        workflows |= await uow.store.current_workflows(missing)
    waiting = [c for c, k in zip(commands, keys, strict=True) if k not in workflows]
    for command in waiting:
        log.info("enroll_parked", workflow_id=command.payload.workflow_id)
    await uow.store.park_enrolls([ParkedEnroll(c, now) for c in waiting])
    await admit(
        uow,
        [c for c, k in zip(commands, keys, strict=True) if k in workflows],
        now,
        workflows=workflows,
    )


async def bulk_enroll(uow: Uow, commands: list[BulkEnroll], now: datetime) -> None:
    """Each record of each command as an ``enrollment.enroll`` of its own (its id derived
    from the command's and the record, so a replay enrolls no one twice; correlated to the
    command), decided as one run: each record is answered ``enrollment.enrolled`` or
    ``enrollment.rejected``, or parked with the others while the workflow is not applied."""
    await enroll(uow, [e for c in commands for e in enrolls_of(c)], now)


def enrolls_of(command: BulkEnroll) -> list[Enroll]:
    """The ``enrollment.enroll`` of each record ``command`` names (the first, if twice)."""
    payload = command.payload
    targets = {t.record: t for t in reversed(payload.records)}
    return [
        Enroll.create(
            message_id=derived_message_id(
                "bulk_enroll", command.account_id, command.message_id, f"{r.type}/{r.id}"
            ),
            account_id=command.account_id,
            occurred_at=command.occurred_at,
            caused_by=command,
            payload=EnrollPayload(
                workflow_id=payload.workflow_id,
                record=r,
                contact=targets[r].contact,
                actor=payload.actor,
                audience_id=payload.audience_id,
            ),
        )
        for r in dict.fromkeys(t.record for t in payload.records)
    ]


async def admit(
    uow: Uow,
    commands: Sequence[Enroll],
    now: datetime,
    *,
    workflows: Mapping[WorkflowKey, domain.WorkflowVersion] | None = None,
    arrived: Mapping[uuid.UUID, datetime] | None = None,
) -> None:
    """Decide each enroll now: admitted, or rejected with every reason (``unknown_workflow``
    when its workflow does not exist). ``workflows`` are the current versions, if known.

    An enroll that would restart an enrollment admitted earlier in the same run starts the
    run's next wave: what came before it is saved first, so it restarts a saved enrollment
    (as it would applied on its own)."""
    if not commands:
        return
    if workflows is None:
        workflows = await uow.store.current_workflows(
            [(c.account_id, c.payload.workflow_id) for c in commands]
        )
    # Key-share locked: a workflow pause or delete waits for this run, and one that
    # committed first is seen (a paused or deleted workflow enrolls no one).
    statuses = await uow.store.workflow_statuses(
        [(c.account_id, c.payload.workflow_id) for c in commands]
    )
    gate = await CapGate.load(uow.store, commands, workflows, now, released=arrived is not None)
    rules = await ExclusivityGate.load(uow.store, commands, workflows)
    excluded = await screening.screen_enrolls(uow.store, commands, now)
    previous: dict[WorkflowRecordKey, list[domain.Enrollment]] = defaultdict(list)
    for enrollment in await uow.store.enrollments_in_workflows_for_update(
        [(c.account_id, c.payload.workflow_id, c.payload.record) for c in commands]
    ):
        previous[(enrollment.account_id, enrollment.workflow_id, enrollment.record)].append(
            enrollment
        )
    admitted_now: set[WorkflowRecordKey] = set()
    decided: list[tuple[Outcome, Enroll]] = []
    later: Sequence[Enroll] = ()
    for index, command in enumerate(commands):
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
            contact=payload.contact,
            actor=payload.actor,
            excluded=(*rules.rejections(command), *excluded.get(command.message_id, ())),
        )
        decision = lifecycle.closed_to_enrollment(
            decision, statuses.get((command.account_id, payload.workflow_id))
        )
        if isinstance(decision, domain.Admitted) and key in admitted_now and decision.restarts:
            later = commands[index:]
            break
        if isinstance(decision, domain.Admitted) and (
            deferred := gate.defer(command, arrived or {}, now)
        ):
            log.info("enrollment_deferred_by_cap", day=str(deferred.day))
            decided.append((deferred, command))
            continue
        if isinstance(decision, domain.Admitted):
            previous[key].append(decision.enrollment)
            admitted_now.add(key)
            rules.admitted(command)
        else:
            log.info("enrollment_rejected", codes=[r.code for r in decision.rejections])
        decided.append((decision, command))
    await _save(uow, decided, now)
    await admit(uow, later, now, workflows=workflows, arrived=arrived)


async def _save(
    uow: Uow,
    decided: list[tuple[Outcome, Enroll]],
    now: datetime,
) -> None:
    admitted = [d for d, _ in decided if isinstance(d, domain.Admitted)]
    await uow.store.park_enrolls(
        [
            ParkedEnroll(d.command, d.arrived_at, d.release_at)
            for d, _ in decided
            if isinstance(d, caps.Deferred)
        ]
    )
    ordered: list[
        tuple[domain.Admitted | domain.Refused | exits.Exited | caps.Deferred, Enroll]
    ] = []
    for decision, command in decided:
        if isinstance(decision, domain.Admitted) and (made_way := _restart(decision, now)):
            ordered.append((made_way, command))
        ordered.append((decision, command))
    restarted = [d for d, _ in ordered if isinstance(d, exits.Exited)]
    await save_changes(uow.store, restarted)
    await uow.store.insert_enrollments(admitted)
    await uow.store.save_audiences(
        [
            (d.enrollment.account_id, d.enrollment.enrollment_id, c.payload.audience_id)
            for d, c in decided
            if isinstance(d, domain.Admitted) and c.payload.audience_id
        ]
    )
    await record(uow, ordered, now)
    log.info(
        "enroll_run",
        admitted=len(admitted),
        rejected=sum(isinstance(d, domain.Refused) for d, _ in decided),
        deferred=sum(isinstance(d, caps.Deferred) for d, _ in decided),
        restarted=len(restarted),
    )


def _restart(admitted: domain.Admitted, now: datetime) -> exits.Exited | None:
    """The exit of the live enrollment ``admitted`` restarts, if any (``restarted`` only
    names one with nothing in flight, so its exit commits now)."""
    if admitted.restarts is None:
        return None
    exited = exits.decide_exit(
        admitted.restarts,
        reason=ExitReason.REENROLLED,
        source=ExitSource.WORKFLOW,
        actor=admitted.actor,
        triggering_event=None,
        agents_may_stop=True,
        now=now,
    )
    if not isinstance(exited, exits.Exited):
        raise TypeError(f"a restarted enrollment exits at once, not {exited!r}")
    return exited
