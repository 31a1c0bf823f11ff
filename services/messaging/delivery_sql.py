"""messaging's SQL of delivery-status reports (``delivery``): find the sends reports name
and record the latest report on each. ``PostgresMessagingStore`` is built on it."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from services.messaging.delivery import DeliveryRecorded, MessageRef, ReportedSend
from services.messaging.send_queue_sql import SEND_COLUMNS, send_of
from shared.contracts.inbound import DeliveryStatus
from shared.db import DbConnection


class DeliverySql:
    """Delivery reports' statements, on the transaction's connection."""

    _conn: DbConnection

    async def sends_reported(self, refs: Collection[MessageRef]) -> dict[MessageRef, ReportedSend]:
        """The sends named by (account, provider_message_id), locked in key order so that
        two runs recording reports of one send apply one after the other."""
        if not refs:
            return {}
        rows = await self._conn.fetch(
            f"""SELECT {SEND_COLUMNS}, s.status, s.delivery_status, s.delivery_reported_at
                FROM sends s
                WHERE (s.account_id, s.provider_message_id) IN
                      (SELECT * FROM unnest($1::text[], $2::text[]))
                ORDER BY s.account_id, s.enrollment_id, s.step_index
                FOR NO KEY UPDATE OF s""",
            [account for account, _ in refs],
            [message_id for _, message_id in refs],
        )
        return {
            (row["account_id"], row["provider_message_id"]): ReportedSend(
                send=send_of(row),
                status=row["status"],
                delivery_status=(
                    DeliveryStatus(row["delivery_status"]) if row["delivery_status"] else None
                ),
                delivery_reported_at=row["delivery_reported_at"],
            )
            for row in rows
        }

    async def record_deliveries(self, recorded: Sequence[DeliveryRecorded]) -> None:
        """Store each send's latest report (the last of a run for one send wins)."""
        latest = {r.key: r for r in recorded}
        if not latest:
            return
        rows = list(latest.values())
        await self._conn.execute(
            """UPDATE sends s
               SET delivery_status = u.status, delivery_error = u.error,
                   delivery_reported_at = u.reported_at
               FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[],
                           $6::timestamptz[])
                    AS u(account_id, enrollment_id, step_index, status, error, reported_at)
               WHERE s.account_id = u.account_id AND s.enrollment_id = u.enrollment_id
                 AND s.step_index = u.step_index""",
            [r.key[0] for r in rows],
            [r.key[1] for r in rows],
            [r.key[2] for r in rows],
            [r.status.value for r in rows],
            [r.error for r in rows],
            [r.reported_at for r in rows],
        )
