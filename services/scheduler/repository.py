"""All of the scheduler's SQL: ``PostgresSchedulerStore``.

The consumer side works on whole runs of messages: each method takes many rows and costs
one statement (``unnest`` arrays in, every row keyed by account and id), however long the
run.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from services.scheduler.domain import EnrollmentKey, TimedPause
from services.scheduler.ports import ArmTimer, FiredTimer
from shared.contracts import RecordRef, RecordType
from shared.contracts.inbound import Channel
from shared.db import DbConnection


def _columns(keys: Collection[EnrollmentKey]) -> tuple[list[str], list[uuid.UUID]]:
    return [account_id for account_id, _ in keys], [enrollment_id for _, enrollment_id in keys]


_UPSERT_TIMERS = """
    INSERT INTO timers (enrollment_id, step_index, account_id, workflow_id, workflow_version,
                        record_type, record_id, step_id, channel, due_at)
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::timestamptz[])
    ON CONFLICT (account_id, enrollment_id, step_index) DO UPDATE
        SET due_at = EXCLUDED.due_at, state = 'pending', cancelled_reason = NULL
        WHERE timers.state = 'cancelled'
           OR (timers.state = 'fired' AND timers.due_at <> EXCLUDED.due_at)"""


def _waves(timers: Sequence[ArmTimer]) -> list[list[ArmTimer]]:
    """Split ``timers`` into lists with each (account, enrollment, step) at most once, in
    order."""
    waves: list[list[ArmTimer]] = []
    last_due: dict[tuple[str, uuid.UUID, int], datetime] = {}
    times_seen: Counter[tuple[str, uuid.UUID, int]] = Counter()
    for timer in timers:
        account_id, step = timer
        key = (account_id, step.enrollment_id, step.step_index)
        if last_due.get(key) == step.due_at:
            continue  # the same upsert twice in a row: the second changes nothing
        last_due[key] = step.due_at
        index = times_seen[key]
        times_seen[key] += 1
        if index == len(waves):
            waves.append([])
        waves[index].append(timer)
    return waves


class PostgresSchedulerStore:
    """``SchedulerStore`` on the transaction's connection."""

    def __init__(self, conn: DbConnection) -> None:
        self._conn = conn

    async def ended_among(self, keys: Collection[EnrollmentKey]) -> set[EnrollmentKey]:
        if not keys:
            return set()
        rows = await self._conn.fetch(
            """SELECT account_id, enrollment_id FROM ended_enrollments
               WHERE (account_id, enrollment_id) IN
                     (SELECT * FROM unnest($1::text[], $2::uuid[]))""",
            *_columns(keys),
        )
        return {(row["account_id"], row["enrollment_id"]) for row in rows}

    async def arm_timers(self, timers: Sequence[ArmTimer]) -> None:
        """One statement can touch a row only once: a repeat of the same step with the same due
        time changes nothing after the first and is dropped; one with another due time goes in
        a following statement (so normally there is one).
        """
        for wave in _waves(timers):
            await self._conn.execute(
                _UPSERT_TIMERS,
                [step.enrollment_id for _, step in wave],
                [step.step_index for _, step in wave],
                [account_id for account_id, _ in wave],
                [step.workflow_id for _, step in wave],
                [step.workflow_version for _, step in wave],
                [step.record.type.value for _, step in wave],
                [step.record.id for _, step in wave],
                [step.step_id for _, step in wave],
                [step.channel.value for _, step in wave],
                [step.due_at for _, step in wave],
            )

    async def cancel_pending(self, reasons: Mapping[EnrollmentKey, str]) -> Counter[EnrollmentKey]:
        if not reasons:
            return Counter()
        rows = await self._conn.fetch(
            """WITH forgotten AS (
                   DELETE FROM resume_timers r
                   USING unnest($1::text[], $2::uuid[]) AS k(account_id, enrollment_id)
                   WHERE r.account_id = k.account_id AND r.enrollment_id = k.enrollment_id
                     AND r.state = 'pending')
               UPDATE timers t SET state = 'cancelled', cancelled_reason = c.reason
               FROM unnest($1::text[], $2::uuid[], $3::text[])
                    AS c(account_id, enrollment_id, reason)
               WHERE t.account_id = c.account_id AND t.enrollment_id = c.enrollment_id
                 AND t.state = 'pending'
               RETURNING t.account_id, t.enrollment_id""",
            *_columns(reasons),
            list(reasons.values()),
        )
        return Counter((row["account_id"], row["enrollment_id"]) for row in rows)

    async def mark_ended(self, outcomes: Mapping[EnrollmentKey, str]) -> None:
        if not outcomes:
            return
        await self._conn.execute(
            """INSERT INTO ended_enrollments (account_id, enrollment_id, outcome)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[])
               ON CONFLICT DO NOTHING""",
            *_columns(outcomes),
            list(outcomes.values()),
        )

    async def fire_due(self, *, now: datetime, limit: int) -> list[FiredTimer]:
        """``limit`` is written into the statement: with ``LIMIT $2`` a generic plan (which
        PostgreSQL may pick for a prepared statement) expects a tenth of the table to be due
        and hash-joins the whole timers table, ~0.5 s per call with a million pending timers,
        instead of 1,000 primary-key lookups.
        """
        rows = await self._conn.fetch(
            f"""WITH due AS (
                    SELECT account_id, enrollment_id, step_index FROM timers
                    WHERE state = 'pending' AND due_at <= $1
                    ORDER BY due_at
                    LIMIT {int(limit)}
                    FOR UPDATE SKIP LOCKED)
                UPDATE timers t SET state = 'fired', fired_at = $1
                FROM due
                WHERE t.account_id = due.account_id AND t.enrollment_id = due.enrollment_id
                  AND t.step_index = due.step_index
                RETURNING t.enrollment_id, t.step_index, t.account_id, t.workflow_id,
                          t.workflow_version, t.record_type, t.record_id, t.step_id, t.channel,
                          t.due_at""",
            now,
        )
        return [
            FiredTimer(
                account_id=row["account_id"],
                enrollment_id=row["enrollment_id"],
                step_index=row["step_index"],
                workflow_id=row["workflow_id"],
                workflow_version=row["workflow_version"],
                record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
                step_id=row["step_id"],
                channel=Channel(row["channel"]),
                due_at=row["due_at"],
            )
            for row in rows
        ]

    async def arm_resumes(self, pauses: Collection[TimedPause]) -> None:
        if not pauses:
            return
        await self._conn.execute(
            """INSERT INTO resume_timers (account_id, enrollment_id, pause_id, workflow_id,
                                          record_type, record_id, due_at, correlation_id)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                                    $6::text[], $7::timestamptz[], $8::uuid[])
               ON CONFLICT DO NOTHING""",
            [p.account_id for p in pauses],
            [p.enrollment_id for p in pauses],
            [p.pause_id for p in pauses],
            [p.workflow_id for p in pauses],
            [p.record.type.value for p in pauses],
            [p.record.id for p in pauses],
            [p.until for p in pauses],
            [p.correlation_id for p in pauses],
        )

    async def drop_resumes(self, keys: Collection[EnrollmentKey]) -> Counter[EnrollmentKey]:
        if not keys:
            return Counter()
        rows = await self._conn.fetch(
            """DELETE FROM resume_timers r
               USING unnest($1::text[], $2::uuid[]) AS k(account_id, enrollment_id)
               WHERE r.account_id = k.account_id AND r.enrollment_id = k.enrollment_id
                 AND r.state = 'pending'
               RETURNING r.account_id, r.enrollment_id""",
            *_columns(keys),
        )
        return Counter((row["account_id"], row["enrollment_id"]) for row in rows)

    async def fire_due_resumes(self, *, now: datetime, limit: int) -> list[TimedPause]:
        """``limit`` is written into the statement, as in ``fire_due``."""
        rows = await self._conn.fetch(
            f"""WITH due AS (
                    SELECT account_id, enrollment_id, pause_id FROM resume_timers
                    WHERE state = 'pending' AND due_at <= $1
                    ORDER BY due_at
                    LIMIT {int(limit)}
                    FOR UPDATE SKIP LOCKED)
                UPDATE resume_timers r SET state = 'fired', fired_at = $1
                FROM due
                WHERE r.account_id = due.account_id AND r.enrollment_id = due.enrollment_id
                  AND r.pause_id = due.pause_id
                RETURNING r.account_id, r.enrollment_id, r.pause_id, r.workflow_id,
                          r.record_type, r.record_id, r.due_at, r.correlation_id""",
            now,
        )
        return sorted(
            (
                TimedPause(
                    account_id=row["account_id"],
                    enrollment_id=row["enrollment_id"],
                    pause_id=row["pause_id"],
                    workflow_id=row["workflow_id"],
                    record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
                    until=row["due_at"],
                    correlation_id=row["correlation_id"],
                )
                for row in rows
            ),
            key=lambda p: p.until,
        )
