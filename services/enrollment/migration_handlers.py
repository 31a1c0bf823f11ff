"""Enrollment subscriber of ``workflow.migrate``: move the live enrollments of one version
of a workflow to another, ``limit`` at a time (repeat the command while the report says
``more``), after a dry run that says what would happen to each. The map is validated first;
a refusal is answered with ``command.refused``."""

from __future__ import annotations

from datetime import datetime

from services.enrollment import answers, domain, migration, migration_messages
from services.enrollment.ports import EnrollmentStore
from services.enrollment.recording import record
from shared.contracts.migration import MigrateWorkflow
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]


async def migrate(uow: Uow, commands: list[MigrateWorkflow], now: datetime) -> None:
    """Each command in turn (a later one sees what an earlier one moved)."""
    for command in commands:
        await _migrate(uow, command, now)


async def _migrate(uow: Uow, command: MigrateWorkflow, now: datetime) -> None:
    p = command.payload
    account, workflow_id = command.account_id, p.workflow_id
    old_key, new_key = (account, workflow_id, p.from_version), (account, workflow_id, p.to_version)
    versions = await uow.store.workflow_versions([old_key, new_key])
    new = versions.get(new_key)
    problem = migration.invalid_map(p.step_map, versions.get(old_key), new)
    if problem is not None or new is None:
        why = problem or domain.Unchanged("the to version does not exist", "unknown_version")
        log.info("migration_refused", workflow_id=workflow_id, why=why.why)
        answer = answers.refused(command, why.code, why.why, workflow_id=workflow_id)
        await record(uow, [(answer, command)], now)
        return
    live = await uow.store.live_of_version_for_update(
        (account, workflow_id), p.from_version, limit=p.limit + 1
    )
    more = len(live) > p.limit
    decided = [migration.decide_migration(e, p.step_map, new) for e in live[: p.limit]]
    moved = [d for d in decided if isinstance(d, migration.Moved)]
    if not p.dry_run:
        await uow.store.save_migrations([d.enrollment for d in moved])
        await uow.store.add_history(
            [migration_messages.history(d, command.message_id, now) for d in moved]
        )
        for decision in moved:
            for message in migration_messages.moved(decision, command):
                uow.publish(message)
    uow.publish(migration_messages.report(command, decided, more=more))
    log.info(
        "workflow_migration",
        workflow_id=workflow_id,
        dry_run=p.dry_run,
        moves=len(moved),
        skipped=len(decided) - len(moved),
        more=more,
    )
