"""All of trigger-evaluator's SQL: ``PostgresTriggerEvaluatorStore`` (its company queries
in ``repository_companies``, what they share in ``repository_rows``).

Every method takes a whole run of messages and costs one statement, however long the
run: keys go in as parallel arrays (``unnest``), matches come back tagged with the index
of the event that asked. Every query filters by ``account_id``: nothing ever crosses
accounts, even where an id alone (an enrollment id, a Message-ID) would be unique. Every
projection write is idempotent, so a re-applied event changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.trigger_evaluator.domain import (
    Candidate,
    Decision,
    MatchKind,
)
from services.trigger_evaluator.parking import ParkedEvent, in_parking_order
from services.trigger_evaluator.projection import EnrollmentEvent, fold_enrollment_events
from services.trigger_evaluator.repository_companies import CompanyLinks
from services.trigger_evaluator.repository_rows import ENROLLMENT, WITH_WORKFLOW, Keys, view
from services.trigger_evaluator.triggers import Signal, normalize_message_id
from shared.contracts import TOPIC_OF_TYPE, Message, decode
from shared.contracts.events import MessageSent, WorkflowApplied
from shared.db import DbConnection

_CANDIDATES = WITH_WORKFLOW.format(
    matches=f"""
        SELECT k.idx, 'thread' AS matched_by, s.sent_at, {ENROLLMENT}
        FROM unnest($1::int[], $2::text[], $3::text[]) AS k(idx, account_id, message_id)
        JOIN sent_messages s
          ON s.account_id = k.account_id AND s.provider_message_id = k.message_id
        JOIN enrollments e ON e.account_id = s.account_id AND e.enrollment_id = s.enrollment_id
        UNION ALL
        SELECT k.idx, k.matched_by, NULL::timestamptz, {ENROLLMENT}
        FROM unnest($4::int[], $5::text[], $6::text[], $7::text[], $8::text[])
             AS k(idx, matched_by, account_id, record_type, record_id)
        JOIN enrollments e
          ON e.account_id = k.account_id
         AND e.record_type = k.record_type AND e.record_id = k.record_id
        UNION ALL
        SELECT k.idx, 'address', NULL::timestamptz, {ENROLLMENT}
        FROM unnest($9::int[], $10::text[], $11::text[]) AS k(idx, account_id, address)
        JOIN enrollments e ON e.account_id = k.account_id AND e.email = k.address
        UNION ALL
        SELECT k.idx, 'address', NULL::timestamptz, e.*
        FROM unnest($12::int[], $13::text[], $14::text[]) AS k(idx, account_id, address)
        CROSS JOIN LATERAL (
            -- One GIN probe per address. The inner OFFSET 0 keeps the planner from
            -- flattening this into a hash join that tests every enrollment's aliases
            -- against every key; filtering the account outside it keeps the planner from
            -- AND-ing the probe with the account index, which reads a whole account's
            -- rows per key (seen at 1 ms a key on 30k rows when statistics lagged).
            SELECT a.* FROM (
                SELECT {ENROLLMENT}
                FROM enrollments e
                WHERE e.aliases @> ARRAY[k.address]
                OFFSET 0
            ) AS a
            WHERE a.account_id = k.account_id
        ) AS e
    """
)

# One row per (account, enrollment), exactly as the events one by one would leave it
# (``projection`` says how a run folds). Rows already there are locked and merged: ended
# stays ended, contact details only change with an ``enrollment.enrolled`` (and the
# enrollment began at the earliest one: LEAST ignores a null). Another
# account's enrollment with the same id is another row, never this one. A row another
# transaction inserts meanwhile (not possible while one record's events share a partition)
# is merged by ON CONFLICT, ended still final.
_SAVE_ENROLLMENTS = """
    WITH change AS (
        SELECT *
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                    $7::text[], $8::bool[], $9::text[], $10::text[], $11::text[], $12::text[],
                    $13::timestamptz[])
             AS c(enrollment_id, account_id, workflow_id, workflow_version, record_type,
                  record_id, status, has_contact, email, aliases, company_domain,
                  enrolled_by_user_id, enrolled_at)
    ), known AS (
        SELECT account_id, enrollment_id, status, email, aliases, company_domain,
               enrolled_by_user_id, enrolled_at
        FROM enrollments
        WHERE (account_id, enrollment_id) IN (SELECT account_id, enrollment_id FROM change)
        ORDER BY account_id, enrollment_id
        FOR UPDATE
    )
    INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                             record_type, record_id, email, aliases, company_domain,
                             enrolled_by_user_id, enrolled_at, status)
    SELECT c.enrollment_id, c.account_id, c.workflow_id, c.workflow_version, c.record_type,
           c.record_id,
           CASE WHEN c.has_contact THEN c.email ELSE k.email END,
           CASE WHEN c.has_contact
                THEN ARRAY(SELECT jsonb_array_elements_text(c.aliases::jsonb))
                ELSE coalesce(k.aliases, '{}') END,
           CASE WHEN c.has_contact THEN c.company_domain ELSE k.company_domain END,
           CASE WHEN c.has_contact THEN c.enrolled_by_user_id ELSE k.enrolled_by_user_id END,
           LEAST(c.enrolled_at, k.enrolled_at),
           coalesce(c.status, k.status, 'active')  -- ended stays: see DO UPDATE
    FROM change c
    LEFT JOIN known k ON k.account_id = c.account_id AND k.enrollment_id = c.enrollment_id
    WHERE k.enrollment_id IS NULL
       OR c.has_contact
       OR (c.status IS NOT NULL AND k.status <> 'ended')
    ON CONFLICT (account_id, enrollment_id) DO UPDATE
        SET status = CASE WHEN enrollments.status = 'ended' THEN 'ended'
                          ELSE EXCLUDED.status END,
            email = EXCLUDED.email, aliases = EXCLUDED.aliases,
            company_domain = EXCLUDED.company_domain,
            enrolled_by_user_id = EXCLUDED.enrolled_by_user_id,
            enrolled_at = EXCLUDED.enrolled_at, updated_at = now()
"""

_PARKED = """
    account_id, inbound_message_id, topic, event, match_keys, why, parked_at, check_at,
    expires_at
"""

# A row parked again keeps when it was parked and when it expires. A conditional row is
# parked only if a workflow version of its account exits on its trigger, or the account
# has no version yet (the first workflow.applied may still be on its way).
_PARK = """
    INSERT INTO parked_events (account_id, inbound_message_id, inbound_type, topic, event,
                               match_keys, why, parked_at, check_at, expires_at)
    SELECT p.account_id, p.inbound_message_id, p.inbound_type, p.topic, p.event,
           ARRAY(SELECT jsonb_array_elements_text(p.match_keys::jsonb)), p.why, p.parked_at,
           p.check_at, p.expires_at
    FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
                $11::text[])
         AS p(account_id, inbound_message_id, inbound_type, topic, event, match_keys, why,
              parked_at, check_at, expires_at, only_if_triggers)
    WHERE p.only_if_triggers IS NULL
       OR EXISTS (SELECT 1 FROM workflow_versions w
                  WHERE w.account_id = p.account_id
                    AND string_to_array(p.only_if_triggers, ',') && w.exit_triggers)
       OR NOT EXISTS (SELECT 1 FROM workflow_versions w WHERE w.account_id = p.account_id)
    ON CONFLICT (account_id, inbound_message_id) DO UPDATE
        SET match_keys = EXCLUDED.match_keys, why = EXCLUDED.why, check_at = EXCLUDED.check_at
    RETURNING account_id, inbound_message_id
"""


def _parked(row: asyncpg.Record) -> ParkedEvent:
    event = decode(row["event"].encode(), topic=row["topic"])
    if not isinstance(event, Message):  # only ever written from a decoded Message
        raise TypeError(f"parked event {row['inbound_message_id']} no longer decodes")
    return ParkedEvent(
        event=event,
        keys=tuple(row["match_keys"]),
        why=row["why"],
        parked_at=row["parked_at"],
        expires_at=row["expires_at"],
        check_at=row["check_at"],
    )


class PostgresTriggerEvaluatorStore(CompanyLinks):
    """``TriggerEvaluatorStore`` on the transaction's connection (the service's schema is
    its search path)."""

    def __init__(self, conn: DbConnection) -> None:
        self._conn = conn

    async def save_workflow_versions(self, applied: Sequence[WorkflowApplied]) -> None:
        # The first of a run wins, as it would one by one (ON CONFLICT DO NOTHING).
        first: dict[tuple[str, str, int], WorkflowApplied] = {}
        for event in applied:
            key = (event.account_id, event.payload.definition.workflow_id, event.payload.version)
            first.setdefault(key, event)
        if not first:
            return
        versions = list(first.values())
        await self._conn.execute(
            """INSERT INTO workflow_versions (account_id, workflow_id, version, record_type,
                                              exit_triggers, unenroll_company_on_reply,
                                              settings)
               SELECT a, w, v, r, ARRAY(SELECT jsonb_array_elements_text(t::jsonb)), u,
                      s::jsonb
               FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[],
                           $6::bool[], $7::text[]) AS x(a, w, v, r, t, u, s)
               ON CONFLICT (account_id, workflow_id, version) DO NOTHING""",
            [e.account_id for e in versions],
            [e.payload.definition.workflow_id for e in versions],
            [e.payload.version for e in versions],
            [e.payload.definition.record_type.value for e in versions],
            [
                json.dumps(sorted(t.value for t in e.payload.definition.settings.exit_triggers))
                for e in versions
            ],
            [e.payload.definition.settings.unenroll_company_on_reply for e in versions],
            [e.payload.definition.settings.model_dump_json() for e in versions],
        )

    async def save_enrollment_events(self, events: Sequence[EnrollmentEvent]) -> None:
        changes = fold_enrollment_events(events)
        if not changes:
            return
        await self._conn.execute(
            _SAVE_ENROLLMENTS,
            [c.enrollment_id for c in changes],
            [c.account_id for c in changes],
            [c.ref.workflow_id for c in changes],
            [c.ref.workflow_version for c in changes],
            [c.ref.record.type.value for c in changes],
            [c.ref.record.id for c in changes],
            [c.status.value if c.status else None for c in changes],
            [c.contact is not None for c in changes],
            [c.contact.email if c.contact else None for c in changes],
            [json.dumps(c.contact.aliases) if c.contact else None for c in changes],
            [c.contact.company_domain if c.contact else None for c in changes],
            [c.contact.enrolled_by_user_id if c.contact else None for c in changes],
            [c.enrolled_at for c in changes],
        )

    async def save_sent_messages(self, sent: Sequence[MessageSent]) -> None:
        first: dict[tuple[str, str], MessageSent] = {}
        for event in sent:
            message_id = normalize_message_id(event.payload.provider_message_id)
            if message_id is not None:  # otherwise nothing a reply could quote
                first.setdefault((event.account_id, message_id), event)
        if not first:
            return
        await self._conn.execute(
            """INSERT INTO sent_messages (account_id, provider_message_id, enrollment_id, sent_at)
               SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::timestamptz[])
               ON CONFLICT (account_id, provider_message_id) DO NOTHING""",
            [account_id for account_id, _ in first],
            [message_id for _, message_id in first],
            [e.payload.enrollment_id for e in first.values()],
            [e.payload.sent_at for e in first.values()],
        )

    async def candidates(self, signals: Sequence[Signal]) -> list[list[Candidate]]:
        threads, records, emails, aliases = Keys(2), Keys(4), Keys(2), Keys(2)
        for idx, signal in enumerate(signals):
            lookup, account_id = signal.lookup, signal.account_id
            for message_id in lookup.sent_message_ids:
                threads.add(idx, account_id, message_id)
            for ref in lookup.records:
                records.add(idx, MatchKind.RECORD.value, account_id, ref.type.value, ref.id)
            for ref in lookup.attendees:
                records.add(idx, MatchKind.ATTENDEE.value, account_id, ref.type.value, ref.id)
            for address in lookup.addresses:
                emails.add(idx, account_id, address)
                if lookup.include_aliases:
                    aliases.add(idx, account_id, address)
        found: list[list[Candidate]] = [[] for _ in signals]
        if not (threads or records or emails):
            return found
        rows = await self._conn.fetch(
            _CANDIDATES, *threads.args(), *records.args(), *emails.args(), *aliases.args()
        )
        for row in rows:
            found[row["idx"]].append(
                Candidate(view(row), MatchKind(row["matched_by"]), row["sent_at"])
            )
        for candidates in found:  # strongest first, then a stable order for replays
            candidates.sort(key=lambda c: (c.matched_by.rank, c.enrollment.enrollment_id))
        return found

    async def save_decisions(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        await self._conn.execute(
            """INSERT INTO decisions (account_id, inbound_message_id, inbound_type, enrollment_id,
                                      record_type, record_id, trigger, matched_by, decision,
                                      reason, why, exit_message_id, resume_at)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::uuid[], $5::text[],
                                    $6::text[], $7::text[], $8::text[], $9::text[],
                                    $10::text[], $11::text[], $12::uuid[], $13::timestamptz[])
               ON CONFLICT (account_id, inbound_message_id, enrollment_id) DO NOTHING""",
            [d.event.account_id for d in decisions],
            [d.event.message_id for d in decisions],
            [d.event.event_type for d in decisions],
            [d.enrollment.enrollment_id if d.enrollment else None for d in decisions],
            [d.record.type.value if d.record else None for d in decisions],
            [d.record.id if d.record else None for d in decisions],
            [d.trigger.value if d.trigger else None for d in decisions],
            [d.matched_by.value if d.matched_by else None for d in decisions],
            [d.outcome.value for d in decisions],
            [d.reason.value if d.reason else None for d in decisions],
            [d.why for d in decisions],
            [d.exit_message_id for d in decisions],
            [d.resume.at if d.resume else None for d in decisions],
        )

    async def park(self, parked: Sequence[ParkedEvent]) -> set[tuple[str, str]]:
        first: dict[tuple[str, str], ParkedEvent] = {}
        for p in parked:  # the last of a run wins, as it would one by one
            first[p.key] = p
        if not first:
            return set()
        rows = list(first.values())
        done = await self._conn.fetch(
            _PARK,
            [p.account_id for p in rows],
            [p.event.message_id for p in rows],
            [p.event.type for p in rows],
            [TOPIC_OF_TYPE[p.event.type] for p in rows],
            [p.event.to_json().decode() for p in rows],
            [json.dumps(p.keys) for p in rows],
            [p.why for p in rows],
            [p.parked_at for p in rows],
            [p.check_at for p in rows],
            [p.expires_at for p in rows],
            [
                ",".join([p.only_if_a_workflow_exits_on, *p.or_exits_on])
                if p.only_if_a_workflow_exits_on
                else None
                for p in rows
            ],
        )
        return {(row["account_id"], str(row["inbound_message_id"])) for row in done}

    async def parked_for(self, keys: Sequence[str]) -> list[ParkedEvent]:
        if not keys:
            return []
        # Locked in one order (two replicas may unblock one event); a row the release loop
        # holds is waited for, and skipped if it released it.
        rows = await self._conn.fetch(
            f"""SELECT {_PARKED} FROM parked_events
                WHERE match_keys && $1::text[]
                ORDER BY account_id, inbound_message_id
                FOR UPDATE""",
            list(keys),
        )
        return in_parking_order(_parked(row) for row in rows)

    async def parked_due(self, now: datetime, limit: int) -> list[ParkedEvent]:
        rows = await self._conn.fetch(
            f"""SELECT {_PARKED} FROM parked_events
                WHERE check_at <= $1
                ORDER BY check_at, account_id, inbound_message_id
                LIMIT $2
                FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        return in_parking_order(_parked(row) for row in rows)

    async def unpark(self, parked: Sequence[ParkedEvent]) -> None:
        if not parked:
            return
        await self._conn.execute(
            """DELETE FROM parked_events
               WHERE (account_id, inbound_message_id) IN (
                   SELECT * FROM unnest($1::text[], $2::uuid[]))""",
            [p.account_id for p in parked],
            [p.event.message_id for p in parked],
        )
