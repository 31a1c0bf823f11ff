"""All of messaging's SQL: ``PostgresMessagingStore``.

Each method takes many rows and costs one statement (``unnest`` arrays in, every row keyed
by account and ids), however long the run or the claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

import asyncpg

from services.messaging.domain import (
    REARMABLE_CANCEL_REASON,
    Cancelled,
    ClaimedSend,
    EnrollmentKey,
    EnrollmentStatus,
    EnrollmentView,
    Failed,
    Released,
    Send,
    SendKey,
    Sent,
    WorkflowStep,
)
from services.messaging.parking import ParkedFailed, ParkedStep, VersionKey
from services.messaging.ports import StepKey
from shared.contracts import RecordRef, RecordType
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel
from shared.db import DbConnection

SENDS_CHANNEL = "messaging_sends"
"""NOTIFY channel that wakes the sender loops when a send is queued."""

_SEND_COLUMNS = """s.enrollment_id, s.step_index, s.account_id, s.workflow_id,
    s.workflow_version, s.record_type, s.record_id, s.step_id, s.channel, s.sender, s.subject,
    s.body, s.provider_message_id, s.attempts, s.cause_message_id, s.correlation_id,
    s.first_failed_at, s.attempt_id"""

_PARKED_COLUMNS = """s.enrollment_id, s.step_index, s.account_id, s.workflow_id,
    s.workflow_version, s.record_type, s.record_id, s.step_id, s.channel,
    s.provider_message_id, s.created_at, s.cause_message_id, s.correlation_id"""

_SEND_KEY = """s.account_id = u.account_id AND s.enrollment_id = u.enrollment_id
                 AND s.step_index = u.step_index"""

_HOLDS_ITS_ATTEMPT = "s.attempt_id IS NOT DISTINCT FROM u.attempt_id"


def _columns(keys: Collection[EnrollmentKey]) -> tuple[list[str], list[uuid.UUID]]:
    return [account_id for account_id, _ in keys], [enrollment_id for _, enrollment_id in keys]


def _send(row: asyncpg.Record) -> Send:
    return Send(
        enrollment_id=row["enrollment_id"],
        step_index=row["step_index"],
        account_id=row["account_id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
        step_id=row["step_id"],
        channel=Channel(row["channel"]),
        sender=row["sender"],
        subject=row["subject"],
        body=row["body"],
        provider_message_id=row["provider_message_id"],
        attempts=row["attempts"],
        cause_message_id=row["cause_message_id"],
        correlation_id=row["correlation_id"],
        first_failed_at=row["first_failed_at"],
        attempt_id=row["attempt_id"],
    )


def _parked(row: asyncpg.Record) -> ParkedStep:
    return ParkedStep(
        enrollment_id=row["enrollment_id"],
        step_index=row["step_index"],
        account_id=row["account_id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
        step_id=row["step_id"],
        channel=Channel(row["channel"]),
        provider_message_id=row["provider_message_id"],
        parked_at=row["created_at"],
        cause_message_id=row["cause_message_id"],
        correlation_id=row["correlation_id"],
    )


def _keys(rows: Sequence[asyncpg.Record]) -> set[SendKey]:
    return {(row["account_id"], row["enrollment_id"], row["step_index"]) for row in rows}


def _key_columns(sends: Sequence[Send]) -> tuple[list[str], list[uuid.UUID], list[int]]:
    return (
        [s.account_id for s in sends],
        [s.enrollment_id for s in sends],
        [s.step_index for s in sends],
    )


class PostgresMessagingStore:
    """``MessagingStore`` on the transaction's connection."""

    def __init__(self, conn: DbConnection) -> None:
        self._conn = conn

    # --- projections and queueing (consumer side) ---

    async def save_workflow_steps(self, steps: Sequence[WorkflowStep]) -> None:
        """Keep versions' steps; a replayed ``workflow.applied`` changes nothing."""
        if not steps:
            return
        await self._conn.execute(
            """INSERT INTO workflow_steps (account_id, workflow_id, version, step_index, step_id,
                                           channel, subject, body, sender)
               SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[],
                                    $6::text[], $7::text[], $8::text[], $9::text[])
               ON CONFLICT DO NOTHING""",
            [s.account_id for s in steps],
            [s.workflow_id for s in steps],
            [s.version for s in steps],
            [s.step_index for s in steps],
            [s.step_id for s in steps],
            [s.channel.value for s in steps],
            [s.subject for s in steps],
            [s.body for s in steps],
            [s.sender for s in steps],
        )

    async def workflow_steps(self, keys: Collection[StepKey]) -> dict[StepKey, WorkflowStep]:
        """The steps named by ``keys`` (account, workflow, version, index) that were applied."""
        if not keys:
            return {}
        rows = await self._conn.fetch(
            """SELECT w.account_id, w.workflow_id, w.version, w.step_index, w.step_id,
                      w.channel, w.subject, w.body, w.sender
               FROM unnest($1::text[], $2::text[], $3::int[], $4::int[])
                    AS k(account_id, workflow_id, version, step_index)
               JOIN workflow_steps w
                 ON w.account_id = k.account_id AND w.workflow_id = k.workflow_id
                AND w.version = k.version AND w.step_index = k.step_index""",
            *(list(column) for column in zip(*keys, strict=True)),
        )
        steps = (
            WorkflowStep(
                account_id=row["account_id"],
                workflow_id=row["workflow_id"],
                version=row["version"],
                step_index=row["step_index"],
                step_id=row["step_id"],
                channel=Channel(row["channel"]),
                subject=row["subject"],
                body=row["body"],
                sender=row["sender"],
            )
            for row in rows
        )
        return {(s.account_id, s.workflow_id, s.version, s.step_index): s for s in steps}

    async def known_versions(self, versions: Collection[VersionKey]) -> set[VersionKey]:
        """Versions with at least one saved step (every applied version has one)."""
        if not versions:
            return set()
        rows = await self._conn.fetch(
            """SELECT DISTINCT w.account_id, w.workflow_id, w.version
               FROM unnest($1::text[], $2::text[], $3::int[]) AS k(account_id, workflow_id, version)
               JOIN workflow_steps w
                 ON w.account_id = k.account_id AND w.workflow_id = k.workflow_id
                AND w.version = k.version""",
            *(list(column) for column in zip(*versions, strict=True)),
        )
        return {(row["account_id"], row["workflow_id"], row["version"]) for row in rows}

    async def enrollments_for_update(
        self, keys: Collection[EnrollmentKey]
    ) -> dict[EnrollmentKey, EnrollmentView]:
        """The projected enrollments, locked (this waits for a sender that is sending to one
        of them). Locked in key order, so two transactions never wait on each other."""
        if not keys:
            return {}
        rows = await self._conn.fetch(
            """SELECT enrollment_id, account_id, workflow_id, workflow_version, record_type,
                      record_id, status, recipient_email
               FROM enrollments
               WHERE (account_id, enrollment_id) IN
                     (SELECT * FROM unnest($1::text[], $2::uuid[]))
               ORDER BY account_id, enrollment_id
               FOR UPDATE""",
            *_columns(keys),
        )
        return {
            (row["account_id"], row["enrollment_id"]): EnrollmentView(
                enrollment_id=row["enrollment_id"],
                account_id=row["account_id"],
                workflow_id=row["workflow_id"],
                workflow_version=row["workflow_version"],
                record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
                status=EnrollmentStatus(row["status"]),
                recipient_email=row["recipient_email"],
            )
            for row in rows
        }

    async def save_enrollments(self, enrollments: Sequence[EnrollmentView]) -> None:
        """Insert or update projection rows (one per enrollment) as the domain decided."""
        if not enrollments:
            return
        await self._conn.execute(
            """INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                                        record_type, record_id, status, recipient_email)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                                    $6::text[], $7::text[], $8::text[])
               ON CONFLICT (account_id, enrollment_id) DO UPDATE
                   SET status = EXCLUDED.status, recipient_email = EXCLUDED.recipient_email,
                       updated_at = now()""",
            [e.enrollment_id for e in enrollments],
            [e.account_id for e in enrollments],
            [e.workflow_id for e in enrollments],
            [e.workflow_version for e in enrollments],
            [e.record.type.value for e in enrollments],
            [e.record.id for e in enrollments],
            [e.status.value for e in enrollments],
            [e.recipient_email for e in enrollments],
        )

    async def add_pending_sends(self, sends: Sequence[Send], *, now: datetime) -> set[SendKey]:
        """Queue sends (one per step and enrollment); a step already sent, queued or failed
        is left alone. Returns the (account, enrollment, step) of those queued.

        Two exceptions. A send cancelled because of a pause never went out, so a new
        ``step.due`` for it (after a resume) queues it again. A parked step gets its content
        (its version has arrived) and is queued, as of now.
        """
        if not sends:
            return set()
        rows = await self._conn.fetch(
            """INSERT INTO sends (enrollment_id, step_index, account_id, workflow_id,
                                  workflow_version, record_type, record_id, step_id, channel,
                                  sender, subject, body, provider_message_id, cause_message_id,
                                  correlation_id, next_attempt_at)
               SELECT u.*, $17::timestamptz
               FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                           $12::text[], $13::text[], $14::uuid[], $15::uuid[]) AS u
               ON CONFLICT (account_id, enrollment_id, step_index) DO UPDATE
                   SET status = 'pending', cancel_reason = NULL, first_failed_at = NULL,
                       next_attempt_at = EXCLUDED.next_attempt_at, finished_at = NULL,
                       sender = COALESCE(sends.sender, EXCLUDED.sender),
                       subject = COALESCE(sends.subject, EXCLUDED.subject),
                       body = COALESCE(sends.body, EXCLUDED.body),
                       cause_message_id = CASE WHEN sends.status = 'parked'
                           THEN EXCLUDED.cause_message_id ELSE sends.cause_message_id END,
                       correlation_id = CASE WHEN sends.status = 'parked'
                           THEN EXCLUDED.correlation_id ELSE sends.correlation_id END,
                       created_at = CASE WHEN sends.status = 'parked'
                           THEN EXCLUDED.created_at ELSE sends.created_at END
                   WHERE sends.status = 'parked'
                      OR (sends.status = 'cancelled' AND sends.cancel_reason = $16)
               RETURNING account_id, enrollment_id, step_index""",
            [s.enrollment_id for s in sends],
            [s.step_index for s in sends],
            [s.account_id for s in sends],
            [s.workflow_id for s in sends],
            [s.workflow_version for s in sends],
            [s.record.type.value for s in sends],
            [s.record.id for s in sends],
            [s.step_id for s in sends],
            [s.channel.value for s in sends],
            [s.sender for s in sends],
            [s.subject for s in sends],
            [s.body for s in sends],
            [s.provider_message_id for s in sends],
            [s.cause_message_id for s in sends],
            [s.correlation_id for s in sends],
            REARMABLE_CANCEL_REASON.value,
            now,
        )
        return {(row["account_id"], row["enrollment_id"], row["step_index"]) for row in rows}

    async def rearm_paused_sends(self, keys: Collection[EnrollmentKey], *, now: datetime) -> int:
        """Queue again the sends that were cancelled only because of a pause."""
        if not keys:
            return 0
        result = await self._conn.execute(
            """UPDATE sends SET status = 'pending', cancel_reason = NULL, next_attempt_at = $4,
                                finished_at = NULL, first_failed_at = NULL
               WHERE (account_id, enrollment_id) IN
                     (SELECT * FROM unnest($1::text[], $2::uuid[]))
                 AND status = 'cancelled' AND cancel_reason = $3""",
            *_columns(keys),
            REARMABLE_CANCEL_REASON.value,
            now,
        )
        return int(result.split()[-1])

    async def park_steps(self, parked: Sequence[ParkedStep]) -> set[SendKey]:
        """Parked rows have the step's id, channel and Message-ID but no content yet."""
        if not parked:
            return set()
        rows = await self._conn.fetch(
            """INSERT INTO sends (enrollment_id, step_index, account_id, workflow_id,
                                  workflow_version, record_type, record_id, step_id, channel,
                                  provider_message_id, created_at, next_attempt_at,
                                  cause_message_id, correlation_id, status)
               SELECT u.enrollment_id, u.step_index, u.account_id, u.workflow_id,
                      u.workflow_version, u.record_type, u.record_id, u.step_id, u.channel,
                      u.provider_message_id, u.created_at, u.created_at, u.cause_message_id,
                      u.correlation_id, 'parked'
               FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                           $7::text[], $8::text[], $9::text[], $10::text[],
                           $11::timestamptz[], $12::uuid[], $13::uuid[])
                    AS u(enrollment_id, step_index, account_id, workflow_id, workflow_version,
                         record_type, record_id, step_id, channel, provider_message_id,
                         created_at, cause_message_id, correlation_id)
               ON CONFLICT (account_id, enrollment_id, step_index) DO NOTHING
               RETURNING account_id, enrollment_id, step_index""",
            [p.enrollment_id for p in parked],
            [p.step_index for p in parked],
            [p.account_id for p in parked],
            [p.workflow_id for p in parked],
            [p.workflow_version for p in parked],
            [p.record.type.value for p in parked],
            [p.record.id for p in parked],
            [p.step_id for p in parked],
            [p.channel.value for p in parked],
            [p.provider_message_id for p in parked],
            [p.parked_at for p in parked],
            [p.cause_message_id for p in parked],
            [p.correlation_id for p in parked],
        )
        return _keys(rows)

    async def parked_of(self, versions: Collection[VersionKey]) -> list[ParkedStep]:
        """Locked in key order, like every other lock of many rows here."""
        if not versions:
            return []
        rows = await self._conn.fetch(
            f"""SELECT {_PARKED_COLUMNS} FROM sends s
                WHERE s.status = 'parked'
                  AND (s.account_id, s.workflow_id, s.workflow_version) IN
                      (SELECT * FROM unnest($1::text[], $2::text[], $3::int[]))
                ORDER BY s.account_id, s.enrollment_id, s.step_index
                FOR NO KEY UPDATE OF s""",
            *(list(column) for column in zip(*versions, strict=True)),
        )
        return [_parked(row) for row in rows]

    async def fail_parked(self, failed: Sequence[ParkedFailed]) -> None:
        """Only a row still parked fails."""
        if not failed:
            return
        await self._conn.execute(
            f"""UPDATE sends s SET status = 'failed', failure_kind = u.kind,
                                   last_error = u.reason, finished_at = u.failed_at
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[],
                            $6::timestamptz[])
                     AS u(account_id, enrollment_id, step_index, kind, reason, failed_at)
                WHERE {_SEND_KEY} AND s.status = 'parked'""",
            [f.parked.account_id for f in failed],
            [f.parked.enrollment_id for f in failed],
            [f.parked.step_index for f in failed],
            [f.kind.value for f in failed],
            [f.reason for f in failed],
            [f.failed_at for f in failed],
        )

    async def wake_senders(self) -> None:
        """NOTIFY is delivered at commit only: a sender never wakes for a rolled-back send."""
        await self._conn.execute("SELECT pg_notify($1, '')", SENDS_CHANNEL)

    # --- the send queue (sender side) ---

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        """Lock due sends, and sends whose ``sending`` lease ran out (a crash), with SKIP
        LOCKED (replicas share the work), and share-lock their enrollments, so no
        projection change commits until this short transaction does.

        Both locks skip instead of waiting: a sender never waits for the consumer (which may
        be applying an exit to that enrollment right now); it takes the send next time and
        then sees the exit. The inner join leaves a send whose enrollment is not projected
        yet (``step.due`` may overtake ``enrollment.enrolled``) for a later claim.
        """
        rows = await self._conn.fetch(
            f"""SELECT {_SEND_COLUMNS}, s.status = 'sending' AS after_crash,
                       e.status AS enrollment_status, e.recipient_email
                FROM sends s
                JOIN enrollments e
                  ON e.enrollment_id = s.enrollment_id AND e.account_id = s.account_id
                WHERE (s.status = 'pending' AND s.next_attempt_at <= $1)
                   OR (s.status = 'sending' AND s.claimed_until <= $1)
                ORDER BY s.next_attempt_at
                LIMIT $2
                FOR NO KEY UPDATE OF s SKIP LOCKED
                FOR SHARE OF e SKIP LOCKED""",
            now,
            limit,
        )
        return [
            ClaimedSend(
                send=_send(row),
                enrollment_status=EnrollmentStatus(row["enrollment_status"]),
                recipient_email=row["recipient_email"],
                after_crash=row["after_crash"],
            )
            for row in rows
        ]

    async def mark_sending(self, sends: Sequence[Send], *, until: datetime) -> None:
        """The rows are locked by this transaction's claim: no attempt to compare (a
        finished send is never handed over)."""
        if not sends:
            return
        await self._conn.execute(
            f"""UPDATE sends s SET status = 'sending', attempt_id = u.attempt_id,
                                   claimed_until = $5
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::uuid[])
                     AS u(account_id, enrollment_id, step_index, attempt_id)
                WHERE {_SEND_KEY} AND s.status IN ('pending', 'sending')""",
            *_key_columns(sends),
            [s.attempt_id for s in sends],
            until,
        )

    async def mark_sent(self, sent: Sequence[Sent]) -> set[SendKey]:
        """Record accepted sends with their recipient and time."""
        if not sent:
            return set()
        rows = await self._conn.fetch(
            f"""UPDATE sends s SET status = 'sent', recipient = u.recipient,
                                   sent_at = u.sent_at, finished_at = u.sent_at,
                                   attempts = s.attempts + 1, last_error = NULL,
                                   claimed_until = NULL
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::uuid[], $5::text[],
                            $6::timestamptz[])
                     AS u(account_id, enrollment_id, step_index, attempt_id, recipient, sent_at)
                WHERE {_SEND_KEY} AND {_HOLDS_ITS_ATTEMPT} AND s.status = 'sending'
                RETURNING s.account_id, s.enrollment_id, s.step_index""",
            *_key_columns([s.send for s in sent]),
            [s.send.attempt_id for s in sent],
            [s.recipient for s in sent],
            [s.sent_at for s in sent],
        )
        return _keys(rows)

    async def mark_cancelled(self, cancelled: Sequence[Cancelled]) -> set[SendKey]:
        """Record sends the re-check stopped, with the reason."""
        if not cancelled:
            return set()
        rows = await self._conn.fetch(
            f"""UPDATE sends s SET status = 'cancelled', cancel_reason = u.reason,
                                   finished_at = now(), claimed_until = NULL
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::uuid[], $5::text[])
                     AS u(account_id, enrollment_id, step_index, attempt_id, reason)
                WHERE {_SEND_KEY} AND {_HOLDS_ITS_ATTEMPT}
                  AND s.status IN ('pending', 'sending')
                RETURNING s.account_id, s.enrollment_id, s.step_index""",
            *_key_columns([c.send for c in cancelled]),
            [c.send.attempt_id for c in cancelled],
            [c.reason.value for c in cancelled],
        )
        return _keys(rows)

    async def record_failures(self, failures: Sequence[Failed]) -> set[SendKey]:
        """Count failed attempts: pending again at ``retry_at``, or failed with its kind."""
        if not failures:
            return set()
        rows = await self._conn.fetch(
            f"""UPDATE sends s
                SET attempts = s.attempts + 1, last_error = u.error,
                    status = CASE WHEN u.retry_at IS NULL THEN 'failed' ELSE 'pending' END,
                    failure_kind = u.kind,
                    next_attempt_at = COALESCE(u.retry_at, s.next_attempt_at),
                    first_failed_at = COALESCE(s.first_failed_at, u.failed_at),
                    finished_at = CASE WHEN u.retry_at IS NULL THEN u.failed_at END,
                    attempt_id = NULL, claimed_until = NULL
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::uuid[], $5::text[],
                            $6::timestamptz[], $7::timestamptz[], $8::text[])
                     AS u(account_id, enrollment_id, step_index, attempt_id, error, retry_at,
                          failed_at, kind)
                WHERE {_SEND_KEY} AND {_HOLDS_ITS_ATTEMPT} AND s.status = 'sending'
                RETURNING s.account_id, s.enrollment_id, s.step_index""",
            *_key_columns([f.send for f in failures]),
            [f.send.attempt_id for f in failures],
            [f.error for f in failures],
            [f.retry_at for f in failures],
            [f.failed_at for f in failures],
            [f.kind.value if f.kind else None for f in failures],
        )
        return _keys(rows)

    async def release(self, released: Sequence[Released], *, now: datetime) -> None:
        """A crash's send keeps ``sending`` (its lease run out), so it is resolved again."""
        if not released:
            return
        await self._conn.execute(
            f"""UPDATE sends s
                SET status = CASE WHEN u.after_crash THEN 'sending' ELSE 'pending' END,
                    claimed_until = CASE WHEN u.after_crash THEN $6::timestamptz END,
                    attempt_id = CASE WHEN u.after_crash THEN s.attempt_id END
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::uuid[], $5::bool[])
                     AS u(account_id, enrollment_id, step_index, attempt_id, after_crash)
                WHERE {_SEND_KEY} AND {_HOLDS_ITS_ATTEMPT} AND s.status = 'sending'""",
            *_key_columns([r.send for r in released]),
            [r.send.attempt_id for r in released],
            [r.after_crash for r in released],
            now,
        )

    async def cancel_orphans(self, *, created_before: datetime, limit: int) -> list[Send]:
        """Cancel pending sends whose enrollment never reached the projection in time."""
        rows = await self._conn.fetch(
            f"""WITH orphans AS (
                    SELECT account_id, enrollment_id, step_index FROM sends
                    WHERE status = 'pending' AND created_at < $1
                      AND NOT EXISTS (SELECT 1 FROM enrollments e
                                      WHERE e.account_id = sends.account_id
                                        AND e.enrollment_id = sends.enrollment_id)
                    LIMIT $2
                    FOR NO KEY UPDATE SKIP LOCKED)
                UPDATE sends s SET status = 'cancelled', cancel_reason = $3, finished_at = now()
                FROM orphans o
                WHERE s.account_id = o.account_id AND s.enrollment_id = o.enrollment_id
                  AND s.step_index = o.step_index
                RETURNING {_SEND_COLUMNS}""",
            created_before,
            limit,
            CancelReason.NO_RECIPIENT.value,
        )
        return [_send(row) for row in rows]

    async def parked_before(self, before: datetime, *, limit: int) -> list[ParkedStep]:
        """Oldest first; SKIP LOCKED, so replicas' expiry passes share the work."""
        rows = await self._conn.fetch(
            f"""SELECT {_PARKED_COLUMNS} FROM sends s
                WHERE s.status = 'parked' AND s.created_at < $1
                ORDER BY s.created_at
                LIMIT $2
                FOR NO KEY UPDATE OF s SKIP LOCKED""",
            before,
            limit,
        )
        return [_parked(row) for row in rows]
