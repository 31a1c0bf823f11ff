"""The lifecycle part of ``PostgresEnrollmentStore``'s SQL (``LifecycleStore``): workflow
status and order, sweeps, activity, restores. Every statement takes many rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.enrollment.domain import Enrollment, WorkflowVersion
from services.enrollment.lifecycle import ActivityChanged, Sweep, WorkflowState
from services.enrollment.lifecycle_ports import EnrollmentKey, WorkflowKey
from services.enrollment.owners import Owned, OwnerPolicy
from services.enrollment.restore import Exit, Restored
from services.enrollment.rows import ENROLLMENT_COLUMNS, enrollment_of
from shared.contracts import Actor, Message
from shared.contracts.commands import ContactDetails, ExitReason, OwnerRemovalPolicy
from shared.contracts.lifecycle_events import (
    WorkflowStatus,
)
from shared.contracts.registry import MESSAGE_TYPES
from shared.contracts.workflow import WorkflowDefinition
from shared.db import DbConnection


def _split(keys: Sequence[WorkflowKey]) -> tuple[list[str], list[str]]:
    wanted = list(dict.fromkeys(keys))
    return [k[0] for k in wanted], [k[1] for k in wanted]


class PostgresLifecycleStore:
    _conn: DbConnection

    async def workflow_states_for_update(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowState]:
        if not keys:
            return {}
        accounts, workflows = _split(keys)
        # The lock first: it waits for enrolls holding the key-share lock, and the read
        # that follows (a snapshot of its own) sees the enrollments they committed.
        await self._conn.execute(
            """SELECT 1 FROM workflows w JOIN unnest($1::text[], $2::text[]) AS k(a, wf)
                 ON w.account_id = k.a AND w.workflow_id = k.wf
               ORDER BY w.account_id, w.workflow_id
               FOR UPDATE OF w""",
            accounts,
            workflows,
        )
        rows = await self._conn.fetch(
            """SELECT w.account_id, w.workflow_id, w.status, n.live, n.latest
               FROM workflows w JOIN unnest($1::text[], $2::text[]) AS k(a, wf)
                 ON w.account_id = k.a AND w.workflow_id = k.wf
               CROSS JOIN LATERAL (
                   SELECT count(*) AS live, max(e.enrolled_at) AS latest FROM enrollments e
                   WHERE e.account_id = w.account_id AND e.workflow_id = w.workflow_id
                     AND e.status IN ('active', 'paused')) AS n""",
            accounts,
            workflows,
        )
        return {
            (r["account_id"], r["workflow_id"]): WorkflowState(
                r["account_id"],
                r["workflow_id"],
                WorkflowStatus(r["status"]),
                r["live"],
                r["latest"],
            )
            for r in rows
        }

    async def workflow_statuses(
        self, keys: Sequence[WorkflowKey]
    ) -> dict[WorkflowKey, WorkflowStatus]:
        if not keys:
            return {}
        accounts, workflows = _split(keys)
        rows = await self._conn.fetch(
            """SELECT w.account_id, w.workflow_id, w.status
               FROM workflows w JOIN unnest($1::text[], $2::text[]) AS k(a, wf)
                 ON w.account_id = k.a AND w.workflow_id = k.wf
               ORDER BY w.account_id, w.workflow_id
               FOR KEY SHARE OF w""",
            accounts,
            workflows,
        )
        return {(r["account_id"], r["workflow_id"]): WorkflowStatus(r["status"]) for r in rows}

    async def set_workflow_statuses(self, states: Sequence[WorkflowState]) -> None:
        latest = list({(s.account_id, s.workflow_id): s for s in states}.values())
        if not latest:
            return
        # FOR UPDATE taken first: key-share lockers (enrolls) wait for this transaction.
        await self._conn.execute(
            """UPDATE workflows w SET status = u.s, updated_at = now()
               FROM unnest($1::text[], $2::text[], $3::text[]) AS u(a, wf, s)
               WHERE w.account_id = u.a AND w.workflow_id = u.wf""",
            [s.account_id for s in latest],
            [s.workflow_id for s in latest],
            [s.status.value for s in latest],
        )

    async def start_sweeps(self, sweeps: Sequence[tuple[Sweep, Message]]) -> None:
        if not sweeps:
            return
        await self._conn.execute(
            """INSERT INTO workflow_sweeps (account_id, sweep_id, workflow_id, reason, actor,
                   cutoff, command)
               SELECT a, i, w, r, ac::jsonb, c, cmd::jsonb
               FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                           $6::timestamptz[], $7::text[]) WITH ORDINALITY
                    AS s(a, i, w, r, ac, c, cmd, n)
               ORDER BY n
               ON CONFLICT DO NOTHING""",
            [s.account_id for s, _ in sweeps],
            [s.sweep_id for s, _ in sweeps],
            [s.workflow_id for s, _ in sweeps],
            [s.reason.value for s, _ in sweeps],
            [s.actor.model_dump_json() for s, _ in sweeps],
            [s.cutoff for s, _ in sweeps],
            [c.model_dump_json() for _, c in sweeps],
        )

    async def next_sweep_for_update(self) -> tuple[Sweep, Message] | None:
        row = await self._conn.fetchrow(
            """SELECT * FROM workflow_sweeps WHERE done_at IS NULL
               ORDER BY started_seq LIMIT 1 FOR UPDATE SKIP LOCKED"""
        )
        if row is None:
            return None
        sweep = Sweep(
            sweep_id=row["sweep_id"],
            account_id=row["account_id"],
            workflow_id=row["workflow_id"],
            reason=ExitReason(row["reason"]),
            actor=Actor.model_validate_json(row["actor"]),
            cutoff=row["cutoff"],
            exited=row["exited"],
            waiting=row["waiting"],
            chunks=row["chunks"],
        )
        stored = json.loads(row["command"])
        return sweep, MESSAGE_TYPES[stored["type"]].model_validate(stored)

    async def live_in_workflow_for_update(self, sweep: Sweep, *, limit: int) -> list[Enrollment]:
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
                WHERE e.account_id = $1 AND e.workflow_id = $2
                  AND e.status IN ('active', 'paused') AND e.pending_exit IS NULL
                  AND e.enrolled_at <= $3
                ORDER BY e.account_id, e.enrollment_id
                LIMIT {int(limit)}
                FOR UPDATE OF e""",
            sweep.account_id,
            sweep.workflow_id,
            sweep.cutoff,
        )
        return [enrollment_of(r) for r in rows]

    async def live_of_version_for_update(
        self, key: WorkflowKey, version: int, *, limit: int
    ) -> list[Enrollment]:
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
                WHERE e.account_id = $1 AND e.workflow_id = $2 AND e.workflow_version = $3
                  AND e.status IN ('active', 'paused')
                ORDER BY (e.dispatch_id IS NOT NULL OR e.pending_exit IS NOT NULL),
                         e.enrollment_id
                LIMIT {int(limit)}
                FOR UPDATE OF e""",
            key[0],
            key[1],
            version,
        )
        return [enrollment_of(r) for r in rows]

    async def save_migrations(self, enrollments: Sequence[Enrollment]) -> None:
        if not enrollments:
            return
        await self._conn.execute(
            """UPDATE enrollments e SET workflow_version = u.v, current_step = u.cs,
                   steps_completed = u.sc, updated_at = now()
               FROM unnest($1::text[], $2::uuid[], $3::int[], $4::int[], $5::int[])
                    AS u(a, id, v, cs, sc)
               WHERE e.account_id = u.a AND e.enrollment_id = u.id""",
            [e.account_id for e in enrollments],
            [e.enrollment_id for e in enrollments],
            [e.workflow_version for e in enrollments],
            [e.current_step for e in enrollments],
            [e.steps_completed for e in enrollments],
        )

    async def save_sweep(self, sweep: Sweep) -> None:
        await self._conn.execute(
            """UPDATE workflow_sweeps SET exited = $3, waiting = $4, chunks = $5,
                   done_at = CASE WHEN $6 THEN now() END
               WHERE account_id = $1 AND sweep_id = $2""",
            sweep.account_id,
            sweep.sweep_id,
            sweep.exited,
            sweep.waiting,
            sweep.chunks,
            sweep.done,
        )

    async def refresh_activity(self) -> list[ActivityChanged]:
        # Only rows whose answer changed are written (and locked).
        rows = await self._conn.fetch(
            """UPDATE workflows w SET active = NOT w.active, activity_seq = w.activity_seq + 1
               WHERE w.active <> EXISTS (
                   SELECT 1 FROM enrollments e
                   WHERE e.account_id = w.account_id AND e.workflow_id = w.workflow_id
                     AND e.status IN ('active', 'paused'))
               RETURNING w.account_id, w.workflow_id, w.active, w.activity_seq"""
        )
        changed = [
            ActivityChanged(r["account_id"], r["workflow_id"], r["active"], r["activity_seq"])
            for r in rows
        ]
        return sorted(changed, key=lambda c: (c.account_id, c.workflow_id))

    async def workflow_order_for_update(self, account_id: str) -> list[str]:
        rows = await self._conn.fetch(
            """SELECT workflow_id FROM workflows
               WHERE account_id = $1 AND status <> 'deleted'
               ORDER BY position NULLS LAST, workflow_id
               FOR UPDATE""",
            account_id,
        )
        return [r["workflow_id"] for r in rows]

    async def set_workflow_order(self, account_id: str, workflow_ids: Sequence[str]) -> None:
        await self._conn.execute(
            """UPDATE workflows w SET position = o.n
               FROM unnest($2::text[]) WITH ORDINALITY AS o(wf, n)
               WHERE w.account_id = $1 AND w.workflow_id = o.wf""",
            account_id,
            list(workflow_ids),
        )

    async def exits_for_update(self, keys: Sequence[EnrollmentKey]) -> list[Exit]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS}, e.contact, e.restored_as FROM enrollments e
                JOIN unnest($1::text[], $2::uuid[]) AS k(a, id)
                  ON e.account_id = k.a AND e.enrollment_id = k.id
                ORDER BY e.account_id, e.enrollment_id FOR UPDATE OF e""",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )
        return [_exit_of(r) for r in rows]

    async def exits_in_workflow_for_update(
        self,
        key: WorkflowKey,
        *,
        reason: ExitReason | None,
        exited_from: datetime | None,
        exited_until: datetime | None,
        limit: int,
        rule_id: str | None = None,
        rule_version: int | None = None,
    ) -> list[Exit]:
        # The rule an exclusion exit is for is in its history entry (found by enrollment).
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS}, e.contact, e.restored_as FROM enrollments e
                WHERE e.account_id = $1 AND e.workflow_id = $2 AND e.status = 'exited'
                  AND e.restored_as IS NULL
                  AND ($3::text IS NULL OR e.exit_reason = $3)
                  AND ($4::timestamptz IS NULL OR e.ended_at >= $4)
                  AND ($5::timestamptz IS NULL OR e.ended_at < $5)
                  AND ($6::text IS NULL OR EXISTS (
                      SELECT 1 FROM enrollment_history h
                      WHERE h.account_id = e.account_id AND h.enrollment_id = e.enrollment_id
                        AND h.event_type = 'enrollment.exited'
                        AND h.detail -> 'exclusion' ->> 'rule_id' = $6
                        AND ($7::int IS NULL
                             OR (h.detail -> 'exclusion' ->> 'version')::int = $7)))
                ORDER BY e.ended_at, e.enrollment_id
                LIMIT {int(limit)}
                FOR UPDATE OF e""",
            key[0],
            key[1],
            reason.value if reason else None,
            exited_from,
            exited_until,
            rule_id,
            rule_version,
        )
        return [_exit_of(r) for r in rows]

    async def owned_workflows_for_update(self, account_id: str, user_id: str) -> list[Owned]:
        rows = await self._conn.fetch(
            """SELECT w.account_id, w.workflow_id, w.status, w.current_version,
                      v.definition, v.definition_hash,
                      (SELECT count(*) FROM enrollments e
                        WHERE e.account_id = w.account_id AND e.workflow_id = w.workflow_id
                          AND e.status IN ('active', 'paused')) AS live
               FROM workflows w
               JOIN workflow_versions v
                 ON v.account_id = w.account_id AND v.workflow_id = w.workflow_id
                AND v.version = w.current_version
               WHERE w.account_id = $1 AND w.status <> 'deleted'
                 AND v.definition ->> 'owner_user_id' = $2
               ORDER BY w.workflow_id
               FOR UPDATE OF w""",
            account_id,
            user_id,
        )
        return [
            Owned(
                WorkflowState(
                    r["account_id"], r["workflow_id"], WorkflowStatus(r["status"]), r["live"]
                ),
                WorkflowVersion(
                    r["account_id"],
                    r["workflow_id"],
                    r["current_version"],
                    WorkflowDefinition.model_validate_json(r["definition"]),
                ),
                r["definition_hash"],
            )
            for r in rows
        ]

    async def owner_policy(self, account_id: str) -> OwnerPolicy:
        row = await self._conn.fetchrow(
            """SELECT policy, reassign_to_user_id FROM account_owner_removal
               WHERE account_id = $1""",
            account_id,
        )
        if row is None:
            return OwnerPolicy()
        return OwnerPolicy(OwnerRemovalPolicy(row["policy"]), row["reassign_to_user_id"])

    async def set_owner_policy(self, account_id: str, setting: OwnerPolicy) -> None:
        await self._conn.execute(
            """INSERT INTO account_owner_removal (account_id, policy, reassign_to_user_id)
               VALUES ($1, $2, $3)
               ON CONFLICT (account_id) DO UPDATE
                   SET policy = EXCLUDED.policy,
                       reassign_to_user_id = EXCLUDED.reassign_to_user_id, updated_at = now()""",
            account_id,
            setting.policy.value,
            setting.reassign_to_user_id,
        )

    async def save_restores(self, restored: Sequence[Restored]) -> None:
        if not restored:
            return
        new = [r.enrollment for r in restored]
        await self._conn.execute(
            """WITH added AS (
                   INSERT INTO enrollments (enrollment_id, account_id, workflow_id,
                       workflow_version, record_type, record_id, contact, status, current_step,
                       steps_completed, next_due_at, enrolled_by, enrolled_at, restored_from,
                       time_zone)
                   SELECT id, a, w, v, t, r, c::jsonb, 'active', cs, cs, d, b::jsonb, at, old, tz
                   FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                               $6::text[], $7::text[], $8::int[], $9::timestamptz[],
                               $10::text[], $11::timestamptz[], $12::uuid[], $13::text[])
                        AS n(id, a, w, v, t, r, c, cs, d, b, at, old, tz)
                   RETURNING account_id, enrollment_id, restored_from)
               UPDATE enrollments e SET restored_as = added.enrollment_id, updated_at = now()
               FROM added
               WHERE e.account_id = added.account_id AND e.enrollment_id = added.restored_from""",
            [e.enrollment_id for e in new],
            [e.account_id for e in new],
            [e.workflow_id for e in new],
            [e.workflow_version for e in new],
            [e.record.type.value for e in new],
            [e.record.id for e in new],
            [r.contact.model_dump_json() if r.contact else None for r in restored],
            [e.current_step for e in new],
            [e.next_due_at for e in new],
            [r.actor.model_dump_json() for r in restored],
            [e.enrolled_at for e in new],
            [r.restored_from.enrollment_id for r in restored],
            [e.time_zone for e in new],
        )


def _exit_of(row: asyncpg.Record) -> Exit:
    contact = row["contact"]
    return Exit(
        enrollment_of(row),
        ContactDetails.model_validate_json(contact) if contact else None,
        row["restored_as"],
    )
