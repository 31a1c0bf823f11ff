"""messaging's SQL of the send queue (the sender's side), and the row mapping both sides
share. ``PostgresMessagingStore`` (``repository``) is built on ``SendQueueSql``.

Each method takes many rows and costs one statement (``unnest`` arrays in, every row keyed
by account and ids), however long the claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.messaging.domain import (
    Cancelled,
    ClaimedSend,
    Deferred,
    Failed,
    Released,
    Send,
    SendKey,
    Sent,
)
from services.messaging.parking import ParkedStep
from services.messaging.projection import EnrollmentKey, EnrollmentStatus
from services.messaging.stopping import QueuedStep
from shared.contracts import RecordRef, RecordType
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel
from shared.db import DbConnection

SENDS_CHANNEL = "messaging_sends"
"""NOTIFY channel that wakes the sender loops when a send is queued."""

SEND_COLUMNS = """s.enrollment_id, s.step_index, s.account_id, s.workflow_id,
    s.workflow_version, s.record_type, s.record_id, s.step_id, s.channel, s.sender, s.subject,
    s.body, s.provider_message_id, s.attempts, s.cause_message_id, s.correlation_id,
    s.first_failed_at, s.attempt_id, s.dispatch_id, s.lease_until"""

PARKED_COLUMNS = """s.enrollment_id, s.step_index, s.account_id, s.workflow_id,
    s.workflow_version, s.record_type, s.record_id, s.step_id, s.channel,
    s.provider_message_id, s.created_at, s.cause_message_id, s.correlation_id,
    s.dispatch_id, s.lease_until"""

QUEUED_COLUMNS = """s.account_id, s.enrollment_id, s.step_index, s.workflow_id,
    s.workflow_version, s.record_type, s.record_id, s.step_id, s.channel, s.status,
    s.dispatch_id, s.cause_message_id, s.correlation_id"""

_AWAITS_RENEWAL = """s.lease_until <= $1
                   AND s.renewal_asked_for IS NOT DISTINCT FROM s.lease_until"""
"""A send whose grant lapsed and whose renewal was asked for (``message.deferred``) and
has not come: no call may start for it, and asking again would say nothing new."""

_UNRESERVED = """(s.status = 'pending' AND b.account_id IS NOT NULL
                AND r.state IS DISTINCT FROM 'reserved')"""
"""An SMS of a metered account (``sms_balance``) whose segments are not reserved: the
claim reserves them first (``balance.reserve_claimed``). One found short already is not
claimed while its account waits for credit (a credit reserves it). A crash's send
(``sending``) was reserved when it was claimed: its outcome settles it."""

SEND_KEY = """s.account_id = u.account_id AND s.enrollment_id = u.enrollment_id
                 AND s.step_index = u.step_index"""

_HOLDS_ITS_ATTEMPT = "s.attempt_id IS NOT DISTINCT FROM u.attempt_id"


def enrollment_columns(
    keys: Collection[EnrollmentKey],
) -> tuple[list[str], list[uuid.UUID]]:
    return [account_id for account_id, _ in keys], [enrollment_id for _, enrollment_id in keys]


def _step_of(row: asyncpg.Record) -> dict[str, Any]:
    """The columns every row of ``sends`` maps the same way: whose step, which one."""
    return {
        "enrollment_id": row["enrollment_id"],
        "step_index": row["step_index"],
        "account_id": row["account_id"],
        "workflow_id": row["workflow_id"],
        "workflow_version": row["workflow_version"],
        "record": RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
        "step_id": row["step_id"],
        "channel": Channel(row["channel"]),
    }


def send_of(row: asyncpg.Record) -> Send:
    return Send(
        **_step_of(row),
        sender=row["sender"],
        subject=row["subject"],
        body=row["body"],
        provider_message_id=row["provider_message_id"],
        attempts=row["attempts"],
        cause_message_id=row["cause_message_id"],
        correlation_id=row["correlation_id"],
        first_failed_at=row["first_failed_at"],
        attempt_id=row["attempt_id"],
        dispatch_id=row["dispatch_id"],
        lease_until=row["lease_until"],
    )


def parked_of_row(row: asyncpg.Record) -> ParkedStep:
    return ParkedStep(
        **_step_of(row),
        provider_message_id=row["provider_message_id"],
        parked_at=row["created_at"],
        cause_message_id=row["cause_message_id"],
        correlation_id=row["correlation_id"],
        dispatch_id=row["dispatch_id"],
        lease_until=row["lease_until"],
    )


def queued_of_row(row: asyncpg.Record) -> QueuedStep:
    return QueuedStep(
        **_step_of(row),
        status=row["status"],
        dispatch_id=row["dispatch_id"],
        cause_message_id=row["cause_message_id"],
        correlation_id=row["correlation_id"],
    )


def send_keys(rows: Sequence[asyncpg.Record]) -> set[SendKey]:
    return {(row["account_id"], row["enrollment_id"], row["step_index"]) for row in rows}


def key_columns(sends: Sequence[Send]) -> tuple[list[str], list[uuid.UUID], list[int]]:
    return (
        [s.account_id for s in sends],
        [s.enrollment_id for s in sends],
        [s.step_index for s in sends],
    )


class SendQueueSql:
    """The sender's statements, on the transaction's connection."""

    _conn: DbConnection

    async def claim_due(self, *, now: datetime, limit: int) -> list[ClaimedSend]:
        """Lock due sends, and sends whose ``sending`` lease ran out (a crash), with SKIP
        LOCKED (replicas share the work), and share-lock their enrollments, so no
        projection change commits until this short transaction does.

        Both locks skip instead of waiting: a sender never waits for the consumer (which may
        be applying an exit to that enrollment right now); it takes the send next time and
        then sees the exit. The inner join leaves a send whose enrollment is not projected
        yet (the projection may start from any point of the topic) for a later claim. A
        send waiting for the renewal of its lapsed grant is not due until it comes, nor is
        one whose sender is full (``send_limits``) until capacity frees, nor an SMS whose
        metered account found its segments short (``_UNRESERVED``) until a credit covers it.
        """
        rows = await self._conn.fetch(
            f"""SELECT {SEND_COLUMNS}, s.status = 'sending' AS after_crash,
                       e.status AS enrollment_status, e.recipient_email, e.recipient_phone,
                       s.next_attempt_at, {_UNRESERVED} AS unreserved
                FROM sends s
                JOIN enrollments e
                  ON e.enrollment_id = s.enrollment_id AND e.account_id = s.account_id
                LEFT JOIN sms_balances b ON b.account_id = s.account_id AND s.channel = 'sms'
                LEFT JOIN sms_reservations r
                  ON r.account_id = s.account_id AND r.enrollment_id = s.enrollment_id
                 AND r.step_index = s.step_index
                WHERE ((s.status = 'pending' AND s.next_attempt_at <= $1)
                       OR (s.status = 'sending' AND s.claimed_until <= $1))
                  AND NOT COALESCE({_AWAITS_RENEWAL}, false)
                  AND NOT COALESCE(s.status = 'pending' AND r.state = 'short'
                                    AND b.when_short = 'wait', false)
                  AND NOT EXISTS (SELECT 1 FROM send_quotas q
                                  WHERE q.account_id = s.account_id AND q.sender = s.sender
                                    AND q.blocked_until > $1)
                ORDER BY s.next_attempt_at
                LIMIT $2
                FOR NO KEY UPDATE OF s SKIP LOCKED
                FOR SHARE OF e SKIP LOCKED""",
            now,
            limit,
        )
        return [
            ClaimedSend(
                send=send_of(row),
                enrollment_status=EnrollmentStatus(row["enrollment_status"]),
                recipient_email=row["recipient_email"],
                after_crash=row["after_crash"],
                due_at=row["next_attempt_at"],
                recipient_phone=row["recipient_phone"],
                unreserved=row["unreserved"],
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
                WHERE {SEND_KEY} AND s.status IN ('pending', 'sending')""",
            *key_columns(sends),
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
                WHERE {SEND_KEY} AND {_HOLDS_ITS_ATTEMPT} AND s.status = 'sending'
                RETURNING s.account_id, s.enrollment_id, s.step_index""",
            *key_columns([s.send for s in sent]),
            [s.send.attempt_id for s in sent],
            [s.recipient for s in sent],
            [s.sent_at for s in sent],
        )
        return send_keys(rows)

    async def mark_cancelled(self, cancelled: Sequence[Cancelled]) -> set[SendKey]:
        """Record sends the re-check stopped, with the reason."""
        if not cancelled:
            return set()
        rows = await self._conn.fetch(
            f"""UPDATE sends s SET status = 'cancelled', cancel_reason = u.reason,
                                   finished_at = now(), claimed_until = NULL
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::uuid[], $5::text[])
                     AS u(account_id, enrollment_id, step_index, attempt_id, reason)
                WHERE {SEND_KEY} AND {_HOLDS_ITS_ATTEMPT}
                  AND s.status IN ('pending', 'sending')
                RETURNING s.account_id, s.enrollment_id, s.step_index""",
            *key_columns([c.send for c in cancelled]),
            [c.send.attempt_id for c in cancelled],
            [c.reason.value for c in cancelled],
        )
        return send_keys(rows)

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
                WHERE {SEND_KEY} AND {_HOLDS_ITS_ATTEMPT} AND s.status = 'sending'
                RETURNING s.account_id, s.enrollment_id, s.step_index""",
            *key_columns([f.send for f in failures]),
            [f.send.attempt_id for f in failures],
            [f.error for f in failures],
            [f.retry_at for f in failures],
            [f.failed_at for f in failures],
            [f.kind.value if f.kind else None for f in failures],
        )
        return send_keys(rows)

    async def defer(self, deferred: Sequence[Deferred], *, now: datetime) -> set[SendKey]:
        """Back to the queue as ``release`` puts it, and the lapsed lease marked as asked
        to be renewed, unless a renewal came meanwhile (then it is only given back)."""
        if not deferred:
            return set()
        rows = await self._conn.fetch(
            f"""UPDATE sends s
                SET status = CASE WHEN u.after_crash THEN 'sending' ELSE 'pending' END,
                    claimed_until = CASE WHEN u.after_crash THEN $7::timestamptz END,
                    attempt_id = CASE WHEN u.after_crash THEN s.attempt_id END,
                    renewal_asked_for = CASE WHEN s.lease_until = u.lease_until
                        THEN u.lease_until ELSE s.renewal_asked_for END
                FROM unnest($1::text[], $2::uuid[], $3::int[], $4::uuid[], $5::timestamptz[],
                            $6::bool[])
                     AS u(account_id, enrollment_id, step_index, attempt_id, lease_until,
                          after_crash)
                WHERE {SEND_KEY} AND {_HOLDS_ITS_ATTEMPT}
                  AND s.status IN ('pending', 'sending')
                RETURNING s.account_id, s.enrollment_id, s.step_index,
                          s.lease_until = u.lease_until AS asked""",
            *key_columns([d.send for d in deferred]),
            [d.send.attempt_id for d in deferred],
            [d.grant.lease_until for d in deferred],
            [d.after_crash for d in deferred],
            now,
        )
        return send_keys([row for row in rows if row["asked"]])

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
                WHERE {SEND_KEY} AND {_HOLDS_ITS_ATTEMPT} AND s.status = 'sending'""",
            *key_columns([r.send for r in released]),
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
                RETURNING {SEND_COLUMNS}""",
            created_before,
            limit,
            CancelReason.NO_RECIPIENT.value,
        )
        return [send_of(row) for row in rows]

    async def parked_before(self, before: datetime, *, limit: int) -> list[ParkedStep]:
        """Oldest first; SKIP LOCKED, so replicas' expiry passes share the work."""
        rows = await self._conn.fetch(
            f"""SELECT {PARKED_COLUMNS} FROM sends s
                WHERE s.status = 'parked' AND s.created_at < $1
                ORDER BY s.created_at
                LIMIT $2
                FOR NO KEY UPDATE OF s SKIP LOCKED""",
            before,
            limit,
        )
        return [parked_of_row(row) for row in rows]
