"""All of messaging's SQL: ``PostgresMessagingStore``.

Each method takes many rows and costs one statement (``unnest`` arrays in, every row keyed
by account and ids), however long the run or the claim.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from services.messaging.delivery_sql import DeliverySql
from services.messaging.domain import REARMABLE_CANCEL_REASON, Send, SendKey, WorkflowStep
from services.messaging.parking import ParkedFailed, ParkedStep, VersionKey
from services.messaging.ports import StepKey
from services.messaging.projection import EnrollmentKey, EnrollmentStatus, EnrollmentView
from services.messaging.send_limits_sql import SendLimitSql
from services.messaging.send_queue_sql import (
    PARKED_COLUMNS,
    QUEUED_COLUMNS,
    SEND_KEY,
    SENDS_CHANNEL,
    SendQueueSql,
    enrollment_columns,
    parked_of_row,
    queued_of_row,
    send_keys,
)
from services.messaging.sms_balance_sql import SmsBalanceSql
from services.messaging.stopping import QueuedStep, Stopped
from shared.contracts import RecordRef, RecordType
from shared.contracts.inbound import Channel
from shared.db import DbConnection


class PostgresMessagingStore(SendQueueSql, SendLimitSql, DeliverySql, SmsBalanceSql):
    """``MessagingStore`` on the transaction's connection: the projections, queueing and
    parking here; the send queue in ``SendQueueSql``, send limits in ``SendLimitSql``,
    delivery reports in ``DeliverySql``."""

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
                      record_id, status, recipient_email, recipient_phone
               FROM enrollments
               WHERE (account_id, enrollment_id) IN
                     (SELECT * FROM unnest($1::text[], $2::uuid[]))
               ORDER BY account_id, enrollment_id
               FOR UPDATE""",
            *enrollment_columns(keys),
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
                recipient_phone=row["recipient_phone"],
            )
            for row in rows
        }

    async def save_enrollments(self, enrollments: Sequence[EnrollmentView]) -> None:
        """Insert or update projection rows (one per enrollment) as the domain decided."""
        if not enrollments:
            return
        await self._conn.execute(
            """INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                                        record_type, record_id, status, recipient_email,
                                        recipient_phone)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                                    $6::text[], $7::text[], $8::text[], $9::text[])
               ON CONFLICT (account_id, enrollment_id) DO UPDATE
                   SET status = EXCLUDED.status, recipient_email = EXCLUDED.recipient_email,
                       recipient_phone = EXCLUDED.recipient_phone, updated_at = now()""",
            [e.enrollment_id for e in enrollments],
            [e.account_id for e in enrollments],
            [e.workflow_id for e in enrollments],
            [e.workflow_version for e in enrollments],
            [e.record.type.value for e in enrollments],
            [e.record.id for e in enrollments],
            [e.status.value for e in enrollments],
            [e.recipient_email for e in enrollments],
            [e.recipient_phone for e in enrollments],
        )

    async def add_pending_sends(self, sends: Sequence[Send], *, now: datetime) -> set[SendKey]:
        """Queue sends (one per step and enrollment) under their grants; returns the
        (account, enrollment, step) of those queued or given a new grant.

        A step that already has a send keeps it, except: a parked step gets its content
        (its version has arrived) and is queued, as of now; a send cancelled for a pause
        never went out, so a new grant of it (after the resume) queues it again under that
        grant; a pending or sending one takes a grant whose lease is later (a renewal),
        which makes it claimable again if it was waiting for one.
        """
        if not sends:
            return set()
        requeued = "sends.status IN ('parked', 'cancelled')"
        takes_grant = (
            "sends.status = 'cancelled' OR sends.lease_until IS NULL"
            " OR EXCLUDED.lease_until > sends.lease_until"
        )
        rows = await self._conn.fetch(
            f"""INSERT INTO sends (enrollment_id, step_index, account_id, workflow_id,
                                  workflow_version, record_type, record_id, step_id, channel,
                                  sender, subject, body, provider_message_id, cause_message_id,
                                  correlation_id, dispatch_id, lease_until, next_attempt_at)
               SELECT u.*, $19::timestamptz
               FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                           $12::text[], $13::text[], $14::uuid[], $15::uuid[], $16::uuid[],
                           $17::timestamptz[]) AS u
               ON CONFLICT (account_id, enrollment_id, step_index) DO UPDATE
                   SET status = CASE WHEN {requeued} THEN 'pending' ELSE sends.status END,
                       cancel_reason = NULL,
                       first_failed_at = CASE WHEN {requeued} THEN NULL
                           ELSE sends.first_failed_at END,
                       next_attempt_at = CASE WHEN {requeued} THEN EXCLUDED.next_attempt_at
                           ELSE sends.next_attempt_at END,
                       finished_at = CASE WHEN {requeued} THEN NULL ELSE sends.finished_at END,
                       sender = COALESCE(sends.sender, EXCLUDED.sender),
                       subject = COALESCE(sends.subject, EXCLUDED.subject),
                       body = COALESCE(sends.body, EXCLUDED.body),
                       cause_message_id = CASE WHEN sends.status = 'parked'
                           THEN EXCLUDED.cause_message_id ELSE sends.cause_message_id END,
                       correlation_id = CASE WHEN sends.status = 'parked'
                           THEN EXCLUDED.correlation_id ELSE sends.correlation_id END,
                       created_at = CASE WHEN sends.status = 'parked'
                           THEN EXCLUDED.created_at ELSE sends.created_at END,
                       dispatch_id = CASE WHEN {takes_grant}
                           THEN EXCLUDED.dispatch_id ELSE sends.dispatch_id END,
                       lease_until = CASE WHEN {takes_grant}
                           THEN EXCLUDED.lease_until ELSE sends.lease_until END,
                       renewal_asked_for = CASE WHEN sends.status = 'cancelled' THEN NULL
                           ELSE sends.renewal_asked_for END
                   WHERE sends.status = 'parked'
                      OR (sends.status = 'cancelled' AND sends.cancel_reason = $18)
                      OR (sends.status IN ('pending', 'sending')
                          AND EXCLUDED.lease_until IS NOT NULL
                          AND (sends.lease_until IS NULL
                               OR EXCLUDED.lease_until > sends.lease_until))
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
            [s.dispatch_id for s in sends],
            [s.lease_until for s in sends],
            REARMABLE_CANCEL_REASON.value,
            now,
        )
        return {(row["account_id"], row["enrollment_id"], row["step_index"]) for row in rows}

    async def queued_of(self, keys: Collection[EnrollmentKey]) -> dict[SendKey, QueuedStep]:
        """Every send of the enrollments ``keys`` (a few steps each)."""
        if not keys:
            return {}
        rows = await self._conn.fetch(
            f"""SELECT {QUEUED_COLUMNS} FROM sends s
                WHERE (s.account_id, s.enrollment_id) IN
                      (SELECT * FROM unnest($1::text[], $2::uuid[]))""",
            *enrollment_columns(keys),
        )
        return {step.key: step for step in map(queued_of_row, rows)}

    async def stop_unsent(self, stopped: Sequence[Stopped]) -> set[SendKey]:
        """Only a row still pending or parked is cancelled: the update waits for a claim
        holding it and then finds it ``sending`` (that call's outcome answers)."""
        if not stopped:
            return set()
        rows = await self._conn.fetch(
            f"""UPDATE sends s SET status = 'cancelled', cancel_reason = u.reason,
                                   finished_at = now(), claimed_until = NULL
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[])
                     AS u(account_id, enrollment_id, step_index, reason)
                WHERE {SEND_KEY} AND s.status IN ('pending', 'parked')
                RETURNING s.account_id, s.enrollment_id, s.step_index""",
            [item.step.account_id for item in stopped],
            [item.step.enrollment_id for item in stopped],
            [item.step.step_index for item in stopped],
            [item.reason.value for item in stopped],
        )
        return send_keys(rows)

    async def park_steps(self, parked: Sequence[ParkedStep]) -> set[SendKey]:
        """Parked rows have the step's id, channel, Message-ID and grant but no content
        yet; a step parked already takes a grant whose lease is later (a renewal)."""
        if not parked:
            return set()
        rows = await self._conn.fetch(
            """INSERT INTO sends (enrollment_id, step_index, account_id, workflow_id,
                                  workflow_version, record_type, record_id, step_id, channel,
                                  provider_message_id, created_at, next_attempt_at,
                                  cause_message_id, correlation_id, dispatch_id, lease_until,
                                  status)
               SELECT u.enrollment_id, u.step_index, u.account_id, u.workflow_id,
                      u.workflow_version, u.record_type, u.record_id, u.step_id, u.channel,
                      u.provider_message_id, u.created_at, u.created_at, u.cause_message_id,
                      u.correlation_id, u.dispatch_id, u.lease_until, 'parked'
               FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                           $7::text[], $8::text[], $9::text[], $10::text[],
                           $11::timestamptz[], $12::uuid[], $13::uuid[], $14::uuid[],
                           $15::timestamptz[])
                    AS u(enrollment_id, step_index, account_id, workflow_id, workflow_version,
                         record_type, record_id, step_id, channel, provider_message_id,
                         created_at, cause_message_id, correlation_id, dispatch_id,
                         lease_until)
               ON CONFLICT (account_id, enrollment_id, step_index) DO UPDATE
                   SET dispatch_id = EXCLUDED.dispatch_id, lease_until = EXCLUDED.lease_until
                   WHERE sends.status = 'parked' AND EXCLUDED.lease_until IS NOT NULL
                     AND (sends.lease_until IS NULL OR EXCLUDED.lease_until > sends.lease_until)
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
            [p.dispatch_id for p in parked],
            [p.lease_until for p in parked],
        )
        return send_keys(rows)

    async def parked_of(self, versions: Collection[VersionKey]) -> list[ParkedStep]:
        """Locked in key order, like every other lock of many rows here."""
        if not versions:
            return []
        rows = await self._conn.fetch(
            f"""SELECT {PARKED_COLUMNS} FROM sends s
                WHERE s.status = 'parked'
                  AND (s.account_id, s.workflow_id, s.workflow_version) IN
                      (SELECT * FROM unnest($1::text[], $2::text[], $3::int[]))
                ORDER BY s.account_id, s.enrollment_id, s.step_index
                FOR NO KEY UPDATE OF s""",
            *(list(column) for column in zip(*versions, strict=True)),
        )
        return [parked_of_row(row) for row in rows]

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
                WHERE {SEND_KEY} AND s.status = 'parked'""",
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
