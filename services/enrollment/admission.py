"""Admitting enrolls: every enroll is decided now (``enrollment.enrolled`` or
``enrollment.rejected`` with every reason), the enroll handler's and the parked enrolls'
common path. An ``anytime`` workflow's enroll of a live record restarts it
(``reenrollment``): the live enrollment exits (``reenrolled``) in the same transaction,
before the new one is inserted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from services.enrollment import domain, exclusivity, exits, lifecycle, screening
from services.enrollment.ports import EnrollmentStore, RecordKey, WorkflowKey, WorkflowRecordKey
from services.enrollment.recording import record, save_changes
from shared.contracts.commands import Enroll, ExitReason, ExitSource
from shared.contracts.enrollment_rules import Exclusivity
from shared.contracts.events import Rejection
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
    rules = await _Exclusivity.load(uow.store, commands, workflows)
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
            excluded=(*rules.rejections(command), *excluded.get(command.message_id, ())),
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
            rules.admitted(command)
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


class _Exclusivity:
    """The account's exclusivity rule for a run's enrolls: where each ruled record is live
    in other workflows, loaded under a per-record lock (two runs enrolling one record into
    two workflows decide one after the other), kept current as the run admits."""

    def __init__(
        self,
        settings: Mapping[str, Exclusivity],
        live: Mapping[RecordKey, list[exclusivity.LiveElsewhere]],
        workflows: Mapping[WorkflowKey, domain.WorkflowVersion],
    ) -> None:
        self._settings = settings
        self._live = defaultdict(list, {k: list(v) for k, v in live.items()})
        self._workflows = workflows

    @staticmethod
    async def load(
        store: EnrollmentStore,
        commands: Sequence[Enroll],
        workflows: Mapping[WorkflowKey, domain.WorkflowVersion],
    ) -> _Exclusivity:
        settings = await store.account_exclusivity(sorted({c.account_id for c in commands}))
        ruled = [
            (c.account_id, c.payload.record)
            for c in commands
            if settings.get(c.account_id, Exclusivity.NO_LIMIT) is not Exclusivity.NO_LIMIT
        ]
        await store.lock_records(ruled)
        live = await store.live_enrollments_for_update(ruled)
        current = await store.current_workflows(
            sorted({(e.account_id, e.workflow_id) for e in live} - set(workflows))
        )
        known = {**current, **workflows}
        found: dict[RecordKey, list[exclusivity.LiveElsewhere]] = defaultdict(list)
        for e in live:
            workflow = known.get((e.account_id, e.workflow_id))
            exclusive = workflow.definition.settings.exclusive if workflow else False
            found[(e.account_id, e.record)].append(
                exclusivity.LiveElsewhere(e.workflow_id, exclusive)
            )
        return _Exclusivity(settings, found, known)

    def _exclusive(self, command: Enroll) -> bool:
        workflow = self._workflows.get((command.account_id, command.payload.workflow_id))
        return workflow.definition.settings.exclusive if workflow else False

    def rejections(self, command: Enroll) -> list[Rejection]:
        setting = self._settings.get(command.account_id, Exclusivity.NO_LIMIT)
        return exclusivity.rejections(
            setting,
            workflow_id=command.payload.workflow_id,
            exclusive=self._exclusive(command),
            live=self._live[(command.account_id, command.payload.record)],
        )

    def admitted(self, command: Enroll) -> None:
        self._live[(command.account_id, command.payload.record)].append(
            exclusivity.LiveElsewhere(command.payload.workflow_id, self._exclusive(command))
        )
