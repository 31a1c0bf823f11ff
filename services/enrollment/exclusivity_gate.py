"""The account's exclusivity rule at admission (``exclusivity``): loaded under a lock per
record, so two runs putting one record into two workflows (an enroll, a restore) decide one
after the other."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from services.enrollment import domain, exclusivity
from services.enrollment.ports import EnrollmentStore, RecordKey, WorkflowKey
from shared.contracts.commands import Enroll
from shared.contracts.enrollment_rules import Exclusivity
from shared.contracts.events import Rejection


class ExclusivityGate:
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
    ) -> ExclusivityGate:
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
        return ExclusivityGate(settings, found, known)

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
