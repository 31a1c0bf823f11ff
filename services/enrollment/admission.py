"""Admitting enrolls: every enroll is decided now (``enrollment.enrolled`` or
``enrollment.rejected`` with every reason), the enroll handler's and the parked enrolls'
common path. An ``anytime`` workflow's enroll of a live record restarts it
(``reenrollment``): the live enrollment exits (``reenrolled``) in the same transaction,
before the new one is inserted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from services.enrollment import domain, exits, lifecycle, screening
from services.enrollment.ports import EnrollmentStore, WorkflowKey, WorkflowRecordKey
from services.enrollment.recording import record, save_changes
from shared.contracts.commands import Enroll, ExitReason, ExitSource
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]


async def admit(
    uow: Uow,
    commands: Sequence[Enroll],
    now: datetime,
    *,
    workflows: Mapping[WorkflowKey, domain.WorkflowVersion] | None = None,
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
    excluded = await screening.screen_enrolls(uow.store, commands, now)
    previous: dict[WorkflowRecordKey, list[domain.Enrollment]] = defaultdict(list)
    for enrollment in await uow.store.enrollments_in_workflows_for_update(
        [(c.account_id, c.payload.workflow_id, c.payload.record) for c in commands]
    ):
        previous[(enrollment.account_id, enrollment.workflow_id, enrollment.record)].append(
            enrollment
        )
    admitted_now: set[WorkflowRecordKey] = set()
    decided: list[tuple[domain.Admitted | domain.Refused, Enroll]] = []
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
            excluded=excluded.get(command.message_id, ()),
        )
        decision = lifecycle.closed_to_enrollment(
            decision, statuses.get((command.account_id, payload.workflow_id))
        )
        if isinstance(decision, domain.Admitted) and key in admitted_now and decision.restarts:
            later = commands[index:]
            break
        if isinstance(decision, domain.Admitted):
            previous[key].append(decision.enrollment)
            admitted_now.add(key)
        else:
            log.info("enrollment_rejected", codes=[r.code for r in decision.rejections])
        decided.append((decision, command))
    await _save(uow, decided, now)
    await admit(uow, later, now, workflows=workflows)


async def _save(
    uow: Uow, decided: list[tuple[domain.Admitted | domain.Refused, Enroll]], now: datetime
) -> None:
    admitted = [d for d, _ in decided if isinstance(d, domain.Admitted)]
    ordered: list[tuple[domain.Admitted | domain.Refused | exits.Exited, Enroll]] = []
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
        rejected=len(decided) - len(admitted),
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
