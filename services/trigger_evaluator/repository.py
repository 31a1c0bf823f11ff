"""All of trigger-evaluator's SQL, behind the ``TriggerRepository`` port.

Every query filters by ``account_id``: nothing ever crosses accounts, even where an id
alone (an enrollment id, a Message-ID) would be unique. Every projection write is
idempotent, so a re-applied event changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

import asyncpg

from services.trigger_evaluator.domain import (
    Decision,
    EnrollmentStatus,
    EnrollmentView,
    WorkflowTriggers,
    company_domain_key,
)
from services.trigger_evaluator.triggers import normalize_message_id
from shared.contracts import ActorKind, RecordRef, RecordType
from shared.contracts.events import EnrolledPayload, EnrollmentRef, MessageSentPayload
from shared.contracts.workflow import ExitTrigger, WorkflowDefinition
from shared.db import DbConnection


class TriggerRepository(Protocol):
    """What the handlers need of storage; tests plug an in-memory fake in here."""

    async def save_workflow_version(
        self, account_id: str, version: int, definition: WorkflowDefinition
    ) -> None: ...

    async def save_enrollment(self, account_id: str, enrolled: EnrolledPayload) -> None: ...

    async def set_status(
        self, account_id: str, ref: EnrollmentRef, status: EnrollmentStatus
    ) -> None: ...

    async def save_sent_message(self, account_id: str, sent: MessageSentPayload) -> None: ...

    async def by_sent_messages(
        self, account_id: str, provider_message_ids: Sequence[str]
    ) -> list[EnrollmentView]: ...

    async def by_records(
        self, account_id: str, records: Sequence[RecordRef]
    ) -> list[EnrollmentView]: ...

    async def by_addresses(
        self, account_id: str, addresses: Sequence[str], *, include_aliases: bool
    ) -> list[EnrollmentView]: ...

    async def live_by_company(
        self, account_id: str, company_domains: Sequence[str]
    ) -> list[EnrollmentView]: ...

    async def save_decisions(
        self,
        account_id: str,
        inbound_message_id: uuid.UUID,
        inbound_type: str,
        decisions: Sequence[Decision],
    ) -> None: ...


_ENROLLMENTS = """
    SELECT e.enrollment_id, e.account_id, e.workflow_id, e.workflow_version, e.record_type,
           e.record_id, e.status, e.email, e.aliases, e.company_domain, e.enrolled_by_user_id,
           w.exit_triggers, w.unenroll_company_on_reply
    FROM enrollments e
    LEFT JOIN workflow_versions w
           ON w.account_id = e.account_id
          AND w.workflow_id = e.workflow_id
          AND w.version = e.workflow_version
"""


def _view(row: asyncpg.Record) -> EnrollmentView:
    triggers = row["exit_triggers"]
    workflow = (
        None
        if triggers is None
        else WorkflowTriggers(
            exit_triggers=frozenset(ExitTrigger(t) for t in triggers),
            unenroll_company_on_reply=row["unenroll_company_on_reply"],
        )
    )
    return EnrollmentView(
        enrollment_id=row["enrollment_id"],
        account_id=row["account_id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        record=RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
        status=EnrollmentStatus(row["status"]),
        workflow=workflow,
        email=row["email"],
        aliases=tuple(row["aliases"]),
        company_domain=row["company_domain"],
        enrolled_by_user_id=row["enrolled_by_user_id"],
    )


class PostgresRepository:
    """The repository on the service's own schema (the pool's search path)."""

    def __init__(self, conn: DbConnection) -> None:
        self._conn = conn

    async def save_workflow_version(
        self, account_id: str, version: int, definition: WorkflowDefinition
    ) -> None:
        await self._conn.execute(
            """INSERT INTO workflow_versions (account_id, workflow_id, version, record_type,
                                              exit_triggers, unenroll_company_on_reply)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (account_id, workflow_id, version) DO NOTHING""",
            account_id,
            definition.workflow_id,
            version,
            definition.record_type.value,
            sorted(t.value for t in definition.settings.exit_triggers),
            definition.settings.unenroll_company_on_reply,
        )

    async def save_enrollment(self, account_id: str, enrolled: EnrolledPayload) -> None:
        """Add the enrollment as active, or fill in its contact details if a lifecycle
        event got here first (its status then stays as that event left it)."""
        contact = enrolled.contact
        actor = enrolled.actor
        await self._conn.execute(
            """INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                                        record_type, record_id, email, aliases, company_domain,
                                        enrolled_by_user_id, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active')
               ON CONFLICT (enrollment_id) DO UPDATE
                   SET email = EXCLUDED.email, aliases = EXCLUDED.aliases,
                       company_domain = EXCLUDED.company_domain,
                       enrolled_by_user_id = EXCLUDED.enrolled_by_user_id, updated_at = now()
                   WHERE enrollments.account_id = EXCLUDED.account_id""",
            enrolled.enrollment_id,
            account_id,
            enrolled.workflow_id,
            enrolled.workflow_version,
            enrolled.record.type.value,
            enrolled.record.id,
            contact.email if contact else None,
            list(contact.aliases) if contact else [],
            company_domain_key(contact.company_domain) if contact else None,
            actor.id if actor.kind is ActorKind.USER else None,
        )

    async def set_status(
        self, account_id: str, ref: EnrollmentRef, status: EnrollmentStatus
    ) -> None:
        """Move the enrollment to ``status``; an ended enrollment never comes back."""
        await self._conn.execute(
            """INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                                        record_type, record_id, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (enrollment_id) DO UPDATE
                   SET status = EXCLUDED.status, updated_at = now()
                   WHERE enrollments.account_id = EXCLUDED.account_id
                     AND enrollments.status <> 'ended'""",
            ref.enrollment_id,
            account_id,
            ref.workflow_id,
            ref.workflow_version,
            ref.record.type.value,
            ref.record.id,
            status.value,
        )

    async def save_sent_message(self, account_id: str, sent: MessageSentPayload) -> None:
        message_id = normalize_message_id(sent.provider_message_id)
        if message_id is None:
            return  # nothing a reply could quote
        await self._conn.execute(
            """INSERT INTO sent_messages (account_id, provider_message_id, enrollment_id, sent_at)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (account_id, provider_message_id) DO NOTHING""",
            account_id,
            message_id,
            sent.enrollment_id,
            sent.sent_at,
        )

    async def by_sent_messages(
        self, account_id: str, provider_message_ids: Sequence[str]
    ) -> list[EnrollmentView]:
        if not provider_message_ids:
            return []
        rows = await self._conn.fetch(
            _ENROLLMENTS
            + """JOIN sent_messages s
                      ON s.account_id = e.account_id AND s.enrollment_id = e.enrollment_id
                 WHERE e.account_id = $1 AND s.provider_message_id = ANY($2::text[])""",
            account_id,
            list(provider_message_ids),
        )
        return [_view(row) for row in rows]

    async def by_records(
        self, account_id: str, records: Sequence[RecordRef]
    ) -> list[EnrollmentView]:
        if not records:
            return []
        rows = await self._conn.fetch(
            _ENROLLMENTS
            + """WHERE e.account_id = $1
                   AND (e.record_type, e.record_id) IN (
                       SELECT t, i FROM unnest($2::text[], $3::text[]) AS r(t, i))""",
            account_id,
            [r.type.value for r in records],
            [r.id for r in records],
        )
        return [_view(row) for row in rows]

    async def by_addresses(
        self, account_id: str, addresses: Sequence[str], *, include_aliases: bool
    ) -> list[EnrollmentView]:
        if not addresses:
            return []
        # Two constant statements rather than one with a flag, so each keeps its index.
        where = (
            "WHERE e.account_id = $1 AND (e.email = ANY($2::text[]) OR e.aliases && $2::text[])"
            if include_aliases
            else "WHERE e.account_id = $1 AND e.email = ANY($2::text[])"
        )
        rows = await self._conn.fetch(_ENROLLMENTS + where, account_id, list(addresses))
        return [_view(row) for row in rows]

    async def live_by_company(
        self, account_id: str, company_domains: Sequence[str]
    ) -> list[EnrollmentView]:
        if not company_domains:
            return []
        rows = await self._conn.fetch(
            _ENROLLMENTS
            + """WHERE e.account_id = $1 AND e.company_domain = ANY($2::text[])
                   AND e.status IN ('active', 'paused')""",
            account_id,
            list(company_domains),
        )
        return [_view(row) for row in rows]

    async def save_decisions(
        self,
        account_id: str,
        inbound_message_id: uuid.UUID,
        inbound_type: str,
        decisions: Sequence[Decision],
    ) -> None:
        if not decisions:
            return
        await self._conn.executemany(
            """INSERT INTO decisions (account_id, inbound_message_id, inbound_type, enrollment_id,
                                      record_type, record_id, trigger, matched_by, decision,
                                      reason, why, exit_message_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (account_id, inbound_message_id, enrollment_id) DO NOTHING""",
            [
                (
                    account_id,
                    inbound_message_id,
                    inbound_type,
                    d.enrollment.enrollment_id if d.enrollment else None,
                    d.record.type.value if d.record else None,
                    d.record.id if d.record else None,
                    d.trigger.value if d.trigger else None,
                    d.matched_by.value if d.matched_by else None,
                    d.outcome.value,
                    d.reason.value if d.reason else None,
                    d.why,
                    d.exit_message_id,
                )
                for d in decisions
            ],
        )
