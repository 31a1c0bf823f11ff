"""All of the enrollment service's SQL: ``PostgresEnrollmentStore``.

Handlers work on whole runs of messages: each method takes many rows and costs one
statement (``unnest`` arrays in, every row keyed by account and id), however long the run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.enrollment.domain import (
    Admitted,
    Enrollment,
    VersionApplied,
    WorkflowVersion,
)
from services.enrollment.exclusions_repository import PostgresExclusionStore
from services.enrollment.exits import Exited
from services.enrollment.lifecycle_repository import PostgresLifecycleStore
from services.enrollment.ports import (
    EnrollmentKey,
    HistoryEntry,
    ParkedEnroll,
    RecordKey,
    VersionKey,
    WorkflowHead,
    WorkflowKey,
    WorkflowRecordKey,
)
from services.enrollment.rows import ENROLLMENT_COLUMNS, enrollment_of, pending_exit_json
from services.enrollment.rules_repository import PostgresRulesStore
from shared.contracts.commands import Enroll
from shared.contracts.workflow import WorkflowDefinition
from shared.db import DbConnection

_WORKFLOW_LOCK_SPACE = "offramp.enrollment.workflow"
"""Prefix of the advisory lock keys of ``lock_workflows``, apart from any other lock."""

VersionCache = dict[VersionKey, WorkflowVersion]

# Workflow versions never change once written, so a process may keep them.
_VERSION_CACHE: VersionCache = {}
_VERSION_CACHE_LIMIT = 10_000


class PostgresEnrollmentStore(PostgresExclusionStore, PostgresLifecycleStore, PostgresRulesStore):
    """``EnrollmentStore`` on the transaction's connection (exclusions' and the lifecycle's
    SQL mixed in)."""

    def __init__(self, conn: DbConnection, *, version_cache: VersionCache | None = None) -> None:
        self._conn = conn
        self._versions = _VERSION_CACHE if version_cache is None else version_cache
        """Versions already read: the process's (one schema per process) unless given."""

    async def workflow_heads(self, keys: Sequence[WorkflowKey]) -> dict[WorkflowKey, WorkflowHead]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = await self._conn.fetch(
            """SELECT w.account_id, w.workflow_id, w.current_version, v.definition_hash
               FROM workflows w
               JOIN unnest($1::text[], $2::text[]) AS k(a, wf)
                 ON w.account_id = k.a AND w.workflow_id = k.wf
               JOIN workflow_versions v
                 ON v.account_id = w.account_id AND v.workflow_id = w.workflow_id
                AND v.version = w.current_version
               ORDER BY w.account_id, w.workflow_id
               FOR UPDATE OF w""",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )
        return {
            (r["account_id"], r["workflow_id"]): (r["current_version"], r["definition_hash"])
            for r in rows
        }

    async def add_workflow_versions(self, applied: Sequence[VersionApplied]) -> None:
        if not applied:
            return
        # One statement: the versions in order, then each workflow's head at its last one.
        heads = list({(a.account_id, a.definition.workflow_id): a for a in applied}.values())
        await self._conn.execute(
            """WITH added AS (
                   INSERT INTO workflow_versions (account_id, workflow_id, version, definition,
                                                  definition_hash, applied_by)
                   SELECT a, wf, n, d::jsonb, h, b::jsonb
                   FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[],
                               $6::text[]) AS v(a, wf, n, d, h, b))
               INSERT INTO workflows (account_id, workflow_id, current_version, record_type, name)
               SELECT * FROM unnest($7::text[], $8::text[], $9::int[], $10::text[], $11::text[])
               ON CONFLICT (account_id, workflow_id) DO UPDATE
                   SET current_version = EXCLUDED.current_version, name = EXCLUDED.name,
                       record_type = EXCLUDED.record_type, updated_at = now()""",
            [a.account_id for a in applied],
            [a.definition.workflow_id for a in applied],
            [a.version for a in applied],
            [a.definition.model_dump_json() for a in applied],
            [a.definition_hash for a in applied],
            [a.actor.model_dump_json() for a in applied],
            [h.account_id for h in heads],
            [h.definition.workflow_id for h in heads],
            [h.version for h in heads],
            [h.definition.record_type.value for h in heads],
            [h.definition.name for h in heads],
        )

    async def current_workflows(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowVersion]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = await self._conn.fetch(
            """SELECT w.account_id, w.workflow_id, w.current_version FROM workflows w
               JOIN unnest($1::text[], $2::text[]) AS k(a, w)
                 ON w.account_id = k.a AND w.workflow_id = k.w""",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )
        versions = await self.workflow_versions(
            [(r["account_id"], r["workflow_id"], r["current_version"]) for r in rows]
        )
        return {(a, w): v for (a, w, _n), v in versions.items()}

    async def workflow_versions(
        self, keys: Sequence[VersionKey]
    ) -> dict[VersionKey, WorkflowVersion]:
        cache = self._versions
        found = {k: cache[k] for k in keys if k in cache}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            rows = await self._conn.fetch(
                """SELECT v.account_id, v.workflow_id, v.version, v.definition
                   FROM workflow_versions v
                   JOIN unnest($1::text[], $2::text[], $3::int[]) AS k(a, w, n)
                     ON v.account_id = k.a AND v.workflow_id = k.w AND v.version = k.n""",
                [k[0] for k in missing],
                [k[1] for k in missing],
                [k[2] for k in missing],
            )
            if len(cache) + len(rows) > _VERSION_CACHE_LIMIT:
                cache.clear()
            for row in rows:
                key = (row["account_id"], row["workflow_id"], row["version"])
                version = WorkflowVersion(
                    *key, WorkflowDefinition.model_validate_json(row["definition"])
                )
                cache[key] = found[key] = version
        return found

    async def enrollments_in_workflows_for_update(
        self, keys: Sequence[WorkflowRecordKey]
    ) -> list[Enrollment]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
                JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(a, w, t, i)
                  ON e.account_id = k.a AND e.workflow_id = k.w
                 AND e.record_type = k.t AND e.record_id = k.i
                ORDER BY e.account_id, e.enrollment_id FOR UPDATE OF e""",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
            [k[2].type.value for k in wanted],
            [k[2].id for k in wanted],
        )
        return sorted((enrollment_of(row) for row in rows), key=lambda e: e.enrolled_at)

    async def live_enrollments_for_update(self, records: Sequence[RecordKey]) -> list[Enrollment]:
        wanted = list(dict.fromkeys(records))
        if not wanted:
            return []
        # Locked in id order, so two transactions never wait on each other in a cycle.
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
                JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(a, t, i)
                  ON e.account_id = k.a AND e.record_type = k.t AND e.record_id = k.i
                WHERE e.status IN ('active', 'paused')
                ORDER BY e.account_id, e.enrollment_id FOR UPDATE OF e""",
            [k[0] for k in wanted],
            [k[1].type.value for k in wanted],
            [k[1].id for k in wanted],
        )
        return sorted((enrollment_of(row) for row in rows), key=lambda e: e.enrolled_at)

    async def enrollments_for_update(self, keys: Sequence[EnrollmentKey]) -> list[Enrollment]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
                JOIN unnest($1::text[], $2::uuid[]) AS k(a, id)
                  ON e.account_id = k.a AND e.enrollment_id = k.id
                ORDER BY e.account_id, e.enrollment_id FOR UPDATE OF e""",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )
        return [enrollment_of(row) for row in rows]

    async def insert_enrollments(self, admitted: Sequence[Admitted]) -> None:
        if not admitted:
            return
        await self._conn.execute(
            """INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                   record_type, record_id, contact, status, current_step, steps_completed,
                   next_due_at, enrolled_by, enrolled_at, time_zone)
               SELECT id, a, w, v, t, r, c::jsonb, s, cs, sc, d, b::jsonb, at, tz
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                           $6::text[], $7::text[], $8::text[], $9::int[], $10::int[],
                           $11::timestamptz[], $12::text[], $13::timestamptz[], $14::text[])
                    AS n(id, a, w, v, t, r, c, s, cs, sc, d, b, at, tz)""",
            [n.enrollment.enrollment_id for n in admitted],
            [n.enrollment.account_id for n in admitted],
            [n.enrollment.workflow_id for n in admitted],
            [n.enrollment.workflow_version for n in admitted],
            [n.enrollment.record.type.value for n in admitted],
            [n.enrollment.record.id for n in admitted],
            [n.contact.model_dump_json() if n.contact else None for n in admitted],
            [n.enrollment.status.value for n in admitted],
            [n.enrollment.current_step for n in admitted],
            [n.enrollment.steps_completed for n in admitted],
            [n.enrollment.next_due_at for n in admitted],
            [n.actor.model_dump_json() for n in admitted],
            [n.enrollment.enrolled_at for n in admitted],
            [n.enrollment.time_zone for n in admitted],
        )

    async def save_progress(self, enrollments: Sequence[Enrollment]) -> None:
        # The last state wins.
        latest = list({(e.account_id, e.enrollment_id): e for e in enrollments}.values())
        if not latest:
            return
        await self._conn.execute(
            """UPDATE enrollments e SET status = u.s, current_step = u.cs,
                   steps_completed = u.sc, next_due_at = u.d, ended_at = u.ended,
                   paused_until = u.pu, pause_id = u.p, dispatch_id = u.di,
                   dispatch_step = u.ds, dispatch_step_id = u.dsi, dispatch_lease_until = u.dl,
                   pending_exit = u.px::jsonb, updated_at = now()
               FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[], $5::int[],
                           $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::uuid[],
                           $10::uuid[], $11::int[], $12::text[], $13::timestamptz[],
                           $14::text[])
                    AS u(a, id, s, cs, sc, d, ended, pu, p, di, ds, dsi, dl, px)
               WHERE e.account_id = u.a AND e.enrollment_id = u.id""",
            [e.account_id for e in latest],
            [e.enrollment_id for e in latest],
            [e.status.value for e in latest],
            [e.current_step for e in latest],
            [e.steps_completed for e in latest],
            [e.next_due_at for e in latest],
            [e.ended_at for e in latest],
            [e.paused_until for e in latest],
            [e.pause_id for e in latest],
            [e.dispatch.dispatch_id if e.dispatch else None for e in latest],
            [e.dispatch.step_index if e.dispatch else None for e in latest],
            [e.dispatch.step_id if e.dispatch else None for e in latest],
            [e.dispatch.lease_until if e.dispatch else None for e in latest],
            [pending_exit_json(e.pending_exit) for e in latest],
        )

    async def save_exits(self, exits: Sequence[Exited]) -> None:
        latest = list(
            {(x.enrollment.account_id, x.enrollment.enrollment_id): x for x in exits}.values()
        )
        if not latest:
            return
        await self._conn.execute(
            """UPDATE enrollments e SET status = 'exited', next_due_at = NULL,
                   ended_at = u.ended, exit_reason = u.reason, exit_source = u.source,
                   exit_actor = u.actor::jsonb, triggering_event = u.ev::jsonb,
                   steps_completed = u.sc, dispatch_id = NULL, dispatch_step = NULL,
                   dispatch_step_id = NULL, dispatch_lease_until = NULL, pending_exit = NULL,
                   updated_at = now()
               FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::int[])
                    AS u(a, id, ended, reason, source, actor, ev, sc)
               WHERE e.account_id = u.a AND e.enrollment_id = u.id""",
            [x.enrollment.account_id for x in latest],
            [x.enrollment.enrollment_id for x in latest],
            [x.enrollment.ended_at for x in latest],
            [x.reason.value for x in latest],
            [x.source.value for x in latest],
            [x.actor.model_dump_json() for x in latest],
            [x.triggering_event.model_dump_json() if x.triggering_event else None for x in latest],
            [x.enrollment.steps_completed for x in latest],
        )

    async def lapsed_exits_for_update(
        self, *, lapsed_before: datetime, limit: int
    ) -> list[Enrollment]:
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
                WHERE e.pending_exit IS NOT NULL AND e.dispatch_lease_until < $1
                ORDER BY e.dispatch_lease_until
                LIMIT {int(limit)}
                FOR UPDATE OF e SKIP LOCKED""",
            lapsed_before,
        )
        return [enrollment_of(row) for row in rows]

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        await self._conn.execute(
            """INSERT INTO enrollment_history (account_id, enrollment_id, workflow_id,
                   record_type, record_id, event_type, detail, caused_by, at)
               SELECT a, e, w, t, r, k, d::jsonb, c, at
               FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::uuid[], $9::timestamptz[])
                    AS h(a, e, w, t, r, k, d, c, at)""",
            [h.account_id for h in entries],
            [h.enrollment_id for h in entries],
            [h.workflow_id for h in entries],
            [h.record.type.value for h in entries],
            [h.record.id for h in entries],
            [h.event_type for h in entries],
            [json.dumps(h.detail, default=str) for h in entries],
            [h.caused_by for h in entries],
            [h.at for h in entries],
        )

    async def lock_workflows(self, keys: Sequence[WorkflowKey]) -> None:
        wanted = sorted(set(keys))  # always in one order: two runs never wait in a cycle
        if not wanted:
            return
        await self._conn.execute(
            """SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || k.a || '/' || k.w, 0))
               FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS k(a, w, n)""",
            _WORKFLOW_LOCK_SPACE,
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )

    async def park_enrolls(self, parked: Sequence[ParkedEnroll]) -> None:
        if not parked:
            return
        await self._conn.execute(
            """INSERT INTO parked_enrolls (account_id, message_id, workflow_id, command,
                                           parked_at, release_at)
               SELECT a, m, w, c::jsonb, at, r
               FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
                           $6::timestamptz[])
                    WITH ORDINALITY AS p(a, m, w, c, at, r, n)
               ORDER BY n
               ON CONFLICT DO NOTHING""",
            [p.command.account_id for p in parked],
            [p.command.message_id for p in parked],
            [p.command.payload.workflow_id for p in parked],
            [p.command.model_dump_json() for p in parked],
            [p.parked_at for p in parked],
            [p.release_at for p in parked],
        )

    async def take_parked(self, keys: Sequence[WorkflowKey]) -> list[Enroll]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        rows = await self._conn.fetch(
            """DELETE FROM parked_enrolls p USING unnest($1::text[], $2::text[]) AS k(a, w)
               WHERE p.account_id = k.a AND p.workflow_id = k.w AND p.release_at IS NULL
               RETURNING p.seq, p.command""",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )
        return _in_arrival_order(rows)

    async def take_expired_parked(self, *, parked_before: datetime, limit: int) -> list[Enroll]:
        rows = await self._conn.fetch(
            f"""DELETE FROM parked_enrolls p
                USING (SELECT account_id, message_id FROM parked_enrolls
                       WHERE parked_at < $1 AND release_at IS NULL
                       ORDER BY parked_at, seq
                       LIMIT {int(limit)}
                       FOR UPDATE SKIP LOCKED) AS due
                WHERE p.account_id = due.account_id AND p.message_id = due.message_id
                RETURNING p.seq, p.command""",
            parked_before,
        )
        return _in_arrival_order(rows)


def _in_arrival_order(rows: Sequence[asyncpg.Record]) -> list[Enroll]:
    return [Enroll.model_validate_json(r["command"]) for r in sorted(rows, key=lambda r: r["seq"])]
