"""The record projection's SQL (records, their fields, companies, suppressions), mixed
into ``PostgresExclusionStore``. Same rules as ``repository``: many rows in, one
statement, every row keyed by account.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from services.enrollment.exclusions import (
    RecordData,
    Subject,
    record_domains,
)
from services.enrollment.exclusions_ports import (
    RecordKey,
    Suppression,
)
from services.enrollment.records import normalized_domains
from shared.contracts import RecordRef, RecordType
from shared.contracts.inbound import FieldValue
from shared.db import DbConnection

_RECORD_LOCK_SPACE = "offramp.enrollment.record"
COMPANY_NAME_SQL = "lower(regexp_replace(btrim({col}), '\\s+', ' ', 'g'))"


def fields_in(fields: Mapping[str, FieldValue]) -> str:
    return json.dumps(dict(fields))


def fields_out(text: str | dict[str, Any]) -> dict[str, FieldValue]:
    raw = json.loads(text) if isinstance(text, str) else text
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def record_ref(record_type: str, record_id: str) -> RecordRef:
    return RecordRef(type=RecordType(record_type), id=record_id)


class PostgresRecordStore:
    """The record projection on the transaction's connection (``self._conn``)."""

    _conn: DbConnection

    # --- the record projection ----------------------------------------------------------

    async def _records(self, keys: Sequence[RecordKey]) -> dict[RecordKey, RecordData]:
        """Each record's data and links; a record with links but no data is a stub."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = await self._conn.fetch(
            """WITH k AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS k(a, t, i))
               SELECT k.a, k.t, k.i, r.fields::text AS fields, r.email, r.aliases,
                      r.company_name, r.domains, r.record_id IS NOT NULL AS known,
                      (SELECT coalesce(array_agg(x.b_type || '/' || x.b_id), '{}')
                       FROM crm_associations x
                       WHERE x.account_id = k.a AND x.a_type = k.t AND x.a_id = k.i) AS links
               FROM k LEFT JOIN crm_records r
                 ON r.account_id = k.a AND r.record_type = k.t AND r.record_id = k.i
               ORDER BY k.a, k.t, k.i""",
            [k[0] for k in wanted],
            [k[1].type.value for k in wanted],
            [k[1].id for k in wanted],
        )
        found: dict[RecordKey, RecordData] = {}
        for row in rows:
            if not row["known"] and not row["links"]:
                continue
            ref = record_ref(row["t"], row["i"])
            links = frozenset(record_ref(*link.split("/", 1)) for link in row["links"])
            found[(row["a"], ref)] = RecordData(
                ref,
                fields=fields_out(row["fields"]) if row["known"] else {},
                email=row["email"],
                aliases=tuple(row["aliases"] or ()),
                company_name=row["company_name"],
                domains=tuple(row["domains"] or ()),
                associations=links,
                known=row["known"],
            )
        return found

    async def records_for_update(self, keys: Sequence[RecordKey]) -> dict[RecordKey, RecordData]:
        # An advisory lock per record, so a record the CRM is creating is locked too.
        wanted = sorted({(a, r.type.value, r.id) for a, r in keys})
        if wanted:
            await self._conn.execute(
                """SELECT pg_advisory_xact_lock(
                       hashtextextended($1 || '/' || k.a || '/' || k.t || '/' || k.i, 0))
                   FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                        AS k(a, t, i, n)""",
                _RECORD_LOCK_SPACE,
                [k[0] for k in wanted],
                [k[1] for k in wanted],
                [k[2] for k in wanted],
            )
        return await self._records(keys)

    async def save_records(
        self, saved: Sequence[tuple[str, RecordData]], deleted: Sequence[RecordKey]
    ) -> None:
        latest = list({(a, d.record): (a, d) for a, d in saved}.values())
        known = [(a, d) for a, d in latest if d.known]
        gone = list(dict.fromkeys(deleted))
        if not latest and not gone:
            return
        touched = [(a, d.record) for a, d in latest] + gone
        links = [(a, d.record, other) for a, d in latest for other in d.associations]
        emails = [
            (a, email, d.record)
            for a, d in known
            for email in dict.fromkeys((d.email, *d.aliases) if d.email else d.aliases)
        ]
        domains = [(a, dom, d.record) for a, d in known for dom in record_domains(d)]
        # Two statements: the sub-statements of one see the same snapshot, so a link (or
        # address) deleted and inserted again in one statement would end up deleted.
        await self._conn.execute(
            """WITH touched AS (
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS t(a, t, i)),
               gone AS (
                   SELECT * FROM unnest($4::text[], $5::text[], $6::text[]) AS g(a, t, i)),
               unlinked AS (
                   DELETE FROM crm_associations x USING touched
                   WHERE x.account_id = touched.a AND ((x.a_type = touched.t AND x.a_id = touched.i)
                      OR (x.b_type = touched.t AND x.b_id = touched.i))),
               dropped AS (
                   DELETE FROM crm_records r USING gone
                   WHERE r.account_id = gone.a AND r.record_type = gone.t AND r.record_id = gone.i),
               no_emails AS (
                   DELETE FROM crm_record_emails x USING touched
                   WHERE x.account_id = touched.a AND x.record_type = touched.t
                     AND x.record_id = touched.i)
               DELETE FROM crm_record_domains x USING touched
               WHERE x.account_id = touched.a AND x.record_type = touched.t
                 AND x.record_id = touched.i""",
            [k[0] for k in touched],
            [k[1].type.value for k in touched],
            [k[1].id for k in touched],
            [k[0] for k in gone],
            [k[1].type.value for k in gone],
            [k[1].id for k in gone],
        )
        await self._conn.execute(
            """WITH upserted AS (
                   INSERT INTO crm_records (account_id, record_type, record_id, fields, email,
                                            aliases, company_name, domains)
                   SELECT a, t, i, f::jsonb, e, coalesce(al::text[], '{}'), c,
                          coalesce(d::text[], '{}')
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                               $6::text[], $7::text[], $8::text[]) AS u(a, t, i, f, e, al, c, d)
                   ON CONFLICT (account_id, record_type, record_id) DO UPDATE
                       SET fields = EXCLUDED.fields, email = EXCLUDED.email,
                           aliases = EXCLUDED.aliases, company_name = EXCLUDED.company_name,
                           domains = EXCLUDED.domains, updated_at = now()),
               linked AS (
                   INSERT INTO crm_associations (account_id, a_type, a_id, b_type, b_id)
                   SELECT DISTINCT a, at, ai, bt, bi FROM (
                       SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::text[],
                                            $13::text[]) AS l(a, at, ai, bt, bi)
                       UNION ALL
                       SELECT a, bt, bi, at, ai FROM unnest($9::text[], $10::text[],
                                $11::text[], $12::text[], $13::text[]) AS l(a, at, ai, bt, bi)
                   ) both_ways
                   ON CONFLICT DO NOTHING),
               with_emails AS (
                   INSERT INTO crm_record_emails (account_id, email, record_type, record_id)
                   SELECT * FROM unnest($14::text[], $15::text[], $16::text[], $17::text[])
                   ON CONFLICT DO NOTHING)
               INSERT INTO crm_record_domains (account_id, domain, record_type, record_id)
               SELECT * FROM unnest($18::text[], $19::text[], $20::text[], $21::text[])
               ON CONFLICT DO NOTHING""",
            [a for a, _ in known],
            [d.record.type.value for _, d in known],
            [d.record.id for _, d in known],
            [fields_in(d.fields) for _, d in known],
            [d.email for _, d in known],
            ["{" + ",".join(json.dumps(x) for x in d.aliases) + "}" for _, d in known],
            [d.company_name for _, d in known],
            ["{" + ",".join(json.dumps(x) for x in d.domains) + "}" for _, d in known],
            [a for a, _, _ in links],
            [r.type.value for _, r, _ in links],
            [r.id for _, r, _ in links],
            [o.type.value for _, _, o in links],
            [o.id for _, _, o in links],
            [a for a, _, _ in emails],
            [e for _, e, _ in emails],
            [r.type.value for _, _, r in emails],
            [r.id for _, _, r in emails],
            [a for a, _, _ in domains],
            [d for _, d, _ in domains],
            [r.type.value for _, _, r in domains],
            [r.id for _, _, r in domains],
        )

    async def subjects(
        self, keys: Sequence[RecordKey], fallback: Mapping[RecordKey, RecordData]
    ) -> dict[RecordKey, Subject]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        projected = await self._records(wanted)
        data = {k: d for k, d in projected.items() if d.known}
        missing = [k for k in wanted if k not in data]
        data |= {k: fallback[k] for k in missing if k in fallback}
        if unknown := [k for k in missing if k not in fallback]:
            data |= await self._enrolled_contacts(unknown)
        for key in missing:  # what the CRM linked to a record it never sent still counts
            if (stub := projected.get(key)) is not None:
                data[key] = replace(data.get(key) or stub, associations=stub.associations)
        links = {k: set(d.associations) for k, d in data.items()}
        orgs = [
            (k[0], o.id)
            for k, found in links.items()
            for o in found
            if o.type is RecordType.ORGANIZATION
        ]
        by_domain = [(k[0], dom) for k, d in data.items() for dom in record_domains(d)]
        companies = await self._companies(orgs, by_domain)
        emails = [(k[0], d.email) for k, d in data.items() if d.email]
        suppressed = await self._suppressed(emails)
        found: dict[RecordKey, Subject] = {}
        for key in wanted:
            account, ref = key
            own = data.get(key)
            if own is None:
                found[key] = Subject(ref)
                continue
            domains = set(record_domains(own))
            mine = tuple(
                c
                for c in companies.get(account, ())
                if c.record != ref and (c.record in own.associations or domains & set(c.domains))
            )
            marks = suppressed.get((account, own.email or ""), set())
            found[key] = Subject(
                ref,
                own,
                companies=mine,
                hard_bounced="hard_bounced" in marks,
                unsubscribed="unsubscribed" in marks,
            )
        return found

    async def _enrolled_contacts(self, keys: Sequence[RecordKey]) -> dict[RecordKey, RecordData]:
        """For records the CRM never sent: what their latest enroll said of the contact."""
        rows = await self._conn.fetch(
            """SELECT DISTINCT ON (e.account_id, e.record_type, e.record_id)
                      e.account_id, e.record_type, e.record_id, e.contact::text AS contact
               FROM enrollments e
               JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(a, t, i)
                 ON e.account_id = k.a AND e.record_type = k.t AND e.record_id = k.i
               WHERE e.contact IS NOT NULL
               ORDER BY e.account_id, e.record_type, e.record_id, e.enrolled_at DESC""",
            [k[0] for k in keys],
            [k[1].type.value for k in keys],
            [k[1].id for k in keys],
        )
        found = {}
        for row in rows:
            contact = json.loads(row["contact"])
            domain = contact.get("company_domain")
            ref = record_ref(row["record_type"], row["record_id"])
            found[(row["account_id"], ref)] = RecordData(
                ref,
                email=contact.get("email"),
                aliases=tuple(contact.get("aliases") or ()),
                domains=normalized_domains((domain,) if domain else ()),
                known=False,
            )
        return found

    async def _companies(
        self, orgs: Sequence[tuple[str, str]], domains: Sequence[tuple[str, str]]
    ) -> dict[str, list[RecordData]]:
        if not orgs and not domains:
            return {}
        rows = await self._conn.fetch(
            """SELECT r.account_id, r.record_id, r.fields::text AS fields, r.company_name,
                      r.domains
               FROM crm_records r
               WHERE r.record_type = 'organization' AND (
                   (r.account_id, r.record_id) IN (
                       SELECT * FROM unnest($1::text[], $2::text[]))
                   OR (r.account_id, r.record_id) IN (
                       SELECT d.account_id, d.record_id FROM crm_record_domains d
                       JOIN unnest($3::text[], $4::text[]) AS q(a, dom)
                         ON d.account_id = q.a AND d.domain = q.dom
                       WHERE d.record_type = 'organization'))
               ORDER BY r.account_id, r.record_id""",
            [o[0] for o in orgs],
            [o[1] for o in orgs],
            [d[0] for d in domains],
            [d[1] for d in domains],
        )
        found: dict[str, list[RecordData]] = {}
        for row in rows:
            found.setdefault(row["account_id"], []).append(
                RecordData(
                    record_ref("organization", row["record_id"]),
                    fields=fields_out(row["fields"]),
                    company_name=row["company_name"],
                    domains=tuple(row["domains"] or ()),
                )
            )
        return found

    async def _suppressed(
        self, emails: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], set[str]]:
        if not emails:
            return {}
        rows = await self._conn.fetch(
            """SELECT s.account_id, s.email, s.kind FROM email_suppressions s
               JOIN unnest($1::text[], $2::text[]) AS k(a, e)
                 ON s.account_id = k.a AND s.email = k.e""",
            [e[0] for e in emails],
            [e[1] for e in emails],
        )
        found: dict[tuple[str, str], set[str]] = {}
        for row in rows:
            found.setdefault((row["account_id"], row["email"]), set()).add(row["kind"])
        return found

    async def contacts_of_companies(
        self, keys: Sequence[RecordKey]
    ) -> list[tuple[RecordKey, RecordKey]]:
        if not keys:
            return []
        rows = await self._conn.fetch(
            """SELECT DISTINCT k.a, k.i AS org, x.record_id AS contact
               FROM unnest($1::text[], $2::text[]) AS k(a, i)
               JOIN LATERAL (
                   SELECT l.b_id AS record_id FROM crm_associations l
                   WHERE l.account_id = k.a AND l.a_type = 'organization' AND l.a_id = k.i
                     AND l.b_type = 'contact'
                   UNION
                   SELECT c.record_id FROM crm_record_domains o
                   JOIN crm_record_domains c ON c.account_id = o.account_id
                    AND c.domain = o.domain AND c.record_type = 'contact'
                   WHERE o.account_id = k.a AND o.record_type = 'organization' AND o.record_id = k.i
               ) x ON true
               ORDER BY k.a, org, contact""",
            [k[0] for k in keys],
            [k[1].id for k in keys],
        )
        return [
            (
                (r["a"], record_ref("organization", r["org"])),
                (r["a"], record_ref("contact", r["contact"])),
            )
            for r in rows
        ]

    async def add_suppressions(self, rows: Sequence[Suppression]) -> None:
        if not rows:
            return
        await self._conn.execute(
            """INSERT INTO email_suppressions (account_id, email, kind, at)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
               ON CONFLICT (account_id, email, kind) DO UPDATE SET at = greatest(
                   email_suppressions.at, EXCLUDED.at)""",
            [r.account_id for r in rows],
            [r.email for r in rows],
            [r.kind for r in rows],
            [r.at for r in rows],
        )
