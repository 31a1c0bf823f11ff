"""The exclusions' SQL: ``PostgresExclusionStore``, mixed into ``PostgresEnrollmentStore``.

Same rules as ``repository``: many rows in, one statement (``unnest`` arrays), every row
keyed by account.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from services.enrollment.domain import Enrollment
from services.enrollment.exclusions import (
    BUILTIN_FIELDS,
    COMPANY_PREFIX,
    RecordData,
    RuleVersion,
    Subject,
    record_domains,
)
from services.enrollment.exclusions_ports import (
    ListChunk,
    ListKey,
    RecordKey,
    RuleKey,
    RulesetKey,
    SavedRuleVersion,
    Suppression,
)
from services.enrollment.records import normalized_domains
from services.enrollment.rows import ENROLLMENT_COLUMNS, enrollment_of
from shared.contracts import RecordRef, RecordType
from shared.contracts.exclusions import (
    Condition,
    ConditionGroup,
    ExclusionRuleDefinition,
    ListKind,
    RuleScope,
    RulesetOwner,
)
from shared.contracts.inbound import FieldValue
from shared.db import DbConnection

_LOCK_SPACE = "offramp.enrollment.exclusions"
_RECORD_LOCK_SPACE = "offramp.enrollment.record"


_COMPANY_NAME_SQL = "lower(regexp_replace(btrim({col}), '\\s+', ' ', 'g'))"


def _fields_in(fields: Mapping[str, FieldValue]) -> str:
    return json.dumps(dict(fields))


def _fields_out(text: str | dict[str, Any]) -> dict[str, FieldValue]:
    raw = json.loads(text) if isinstance(text, str) else text
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def _ref(record_type: str, record_id: str) -> RecordRef:
    return RecordRef(type=RecordType(record_type), id=record_id)


def _rule(row: asyncpg.Record) -> RuleVersion:
    return RuleVersion(
        row["account_id"],
        ExclusionRuleDefinition.model_validate_json(row["definition"]),
        row["version"],
        enabled=row["enabled"],
        deleted=row["deleted"],
    )


_RECORD_OF_E = """SELECT 1 FROM crm_records r WHERE r.account_id = e.account_id
    AND r.record_type = e.record_type AND r.record_id = e.record_id"""


def _texts(value: FieldValue) -> list[str] | None:
    """Lower-case ASCII text values (where SQL's lower() agrees with Python's casefold)."""
    values = value if isinstance(value, tuple) else (value,)
    if not values or not all(isinstance(v, str) and v.isascii() for v in values):
        return None
    return [str(v).lower() for v in values]


def _condition_sql(condition: Condition, scope: RuleScope, params: list[Any]) -> str:
    """A SQL test true for every enrollment ``condition`` may match (TRUE when unsure)."""
    name, op = condition.field, condition.operator
    if scope is RuleScope.COMPANY or name.startswith(COMPANY_PREFIX):
        return "TRUE"
    texts = _texts(condition.value) if op in ("is", "in") else None
    if name == "email" and texts is not None:
        params.append(texts)
        n = len(params)
        return f"""(lower(e.contact->>'email') = ANY(${n}::text[]) OR EXISTS (
            SELECT 1 FROM crm_record_emails x WHERE x.account_id = e.account_id
              AND x.record_type = e.record_type AND x.record_id = e.record_id
              AND x.email = ANY(${n}::text[])))"""
    if name in BUILTIN_FIELDS:
        return "TRUE"
    if texts is not None:
        params.extend([name, texts])
        f, v = len(params) - 1, len(params)
        return f"""EXISTS ({_RECORD_OF_E} AND (lower(r.fields->>${f}) = ANY(${v}::text[])
            OR (jsonb_typeof(r.fields->${f}) = 'array' AND EXISTS (
                SELECT 1 FROM jsonb_array_elements_text(r.fields->${f}) el
                WHERE lower(el) = ANY(${v}::text[])))))"""
    if op == "set":
        params.append(name)
        return f"EXISTS ({_RECORD_OF_E} AND r.fields ? ${len(params)})"
    return "TRUE"


def _group_sql(group: ConditionGroup, scope: RuleScope, params: list[Any]) -> str:
    parts = [
        _group_sql(c, scope, params)
        if isinstance(c, ConditionGroup)
        else _condition_sql(c, scope, params)
        for c in group.conditions
    ]
    return "(" + (" AND " if group.match == "all" else " OR ").join(parts) + ")"


def rule_prefilter(rule: RuleVersion, params: list[Any]) -> str:
    """A set-based SQL test over enrollments ``e`` that keeps every one ``rule`` may match
    (the pure ``exclusions.matches`` then decides and explains): a rule change reads the
    few candidates, not every live enrollment."""
    definition = rule.definition
    parts = [_group_sql(definition.when, definition.scope, params)]
    parts += [_condition_sql(c, definition.scope, params) for c in definition.exceptions]
    return " AND ".join(parts)


class PostgresExclusionStore:
    """``ExclusionStore`` on the transaction's connection (``self._conn``)."""

    _conn: DbConnection

    async def lock_exclusions(self, accounts: Sequence[str], *, exclusive: bool) -> None:
        wanted = sorted(set(accounts))
        if not wanted:
            return
        take = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await self._conn.execute(
            f"""SELECT {take}(hashtextextended($1 || k.a, 0))
               FROM unnest($2::text[]) WITH ORDINALITY AS k(a, n) ORDER BY k.n""",
            _LOCK_SPACE,
            wanted,
        )

    async def rules_for_update(self, keys: Sequence[RuleKey]) -> dict[RuleKey, RuleVersion]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = await self._conn.fetch(
            """SELECT v.account_id, v.rule_id, v.version, v.definition::text AS definition,
                      v.enabled, v.deleted
               FROM exclusion_rules r
               JOIN unnest($1::text[], $2::text[]) AS k(a, id)
                 ON r.account_id = k.a AND r.rule_id = k.id
               JOIN exclusion_rule_versions v ON v.account_id = r.account_id
                AND v.rule_id = r.rule_id AND v.version = r.current_version
               ORDER BY r.account_id, r.rule_id
               FOR UPDATE OF r""",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )
        return {(r["account_id"], r["rule_id"]): _rule(r) for r in rows}

    async def add_rule_versions(self, versions: Sequence[SavedRuleVersion]) -> None:
        if not versions:
            return
        heads = list({(v.rule.account_id, v.rule.rule_id): v for v in versions}.values())
        await self._conn.execute(
            """WITH added AS (
                   INSERT INTO exclusion_rule_versions (account_id, rule_id, version, definition,
                                                        enabled, deleted, change, actor, at)
                   SELECT a, id, n, d::jsonb, en, del, c, ac::jsonb, at
                   FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bool[],
                               $6::bool[], $7::text[], $8::text[], $9::timestamptz[])
                        AS v(a, id, n, d, en, del, c, ac, at))
               INSERT INTO exclusion_rules (account_id, rule_id, current_version)
               SELECT * FROM unnest($10::text[], $11::text[], $12::int[])
               ON CONFLICT (account_id, rule_id) DO UPDATE
                   SET current_version = EXCLUDED.current_version""",
            [v.rule.account_id for v in versions],
            [v.rule.rule_id for v in versions],
            [v.rule.version for v in versions],
            [v.rule.definition.model_dump_json() for v in versions],
            [v.rule.enabled for v in versions],
            [v.rule.deleted for v in versions],
            [v.change.value for v in versions],
            [v.actor.model_dump_json() for v in versions],
            [v.at for v in versions],
            [h.rule.account_id for h in heads],
            [h.rule.rule_id for h in heads],
            [h.rule.version for h in heads],
        )

    async def account_rules(self, accounts: Sequence[str]) -> dict[str, list[RuleVersion]]:
        rows = await self._conn.fetch(
            """SELECT v.account_id, v.rule_id, v.version, v.definition::text AS definition,
                      v.enabled, v.deleted
               FROM exclusion_rules r
               JOIN exclusion_rule_versions v ON v.account_id = r.account_id
                AND v.rule_id = r.rule_id AND v.version = r.current_version
               WHERE r.account_id = ANY($1::text[])
               ORDER BY r.account_id, r.rule_id""",
            list(dict.fromkeys(accounts)),
        )
        found: dict[str, list[RuleVersion]] = {}
        for row in rows:
            found.setdefault(row["account_id"], []).append(_rule(row))
        return found

    async def rulesets(self, keys: Sequence[RulesetKey]) -> dict[RulesetKey, dict[str, bool]]:
        rows = await self._conn.fetch(
            """SELECT s.account_id, s.owner, s.owner_id, s.toggles::text AS toggles
               FROM exclusion_rulesets s
               JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(a, o, id)
                 ON s.account_id = k.a AND s.owner = k.o AND s.owner_id = k.id""",
            [k[0] for k in keys],
            [k[1].value for k in keys],
            [k[2] for k in keys],
        )
        return {
            (r["account_id"], RulesetOwner(r["owner"]), r["owner_id"]): json.loads(r["toggles"])
            for r in rows
        }

    async def put_rulesets(self, rows: Sequence[tuple[RulesetKey, Mapping[str, bool]]]) -> None:
        latest = list({key: (key, toggles) for key, toggles in rows}.values())
        if not latest:
            return
        await self._conn.execute(
            """INSERT INTO exclusion_rulesets (account_id, owner, owner_id, toggles)
               SELECT a, o, id, t::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                   AS k(a, o, id, t)
               ON CONFLICT (account_id, owner, owner_id) DO UPDATE
                   SET toggles = EXCLUDED.toggles, updated_at = now()""",
            [k[0] for k, _ in latest],
            [k[1].value for k, _ in latest],
            [k[2] for k, _ in latest],
            [json.dumps(dict(t)) for _, t in latest],
        )

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
            ref = _ref(row["t"], row["i"])
            links = frozenset(_ref(*link.split("/", 1)) for link in row["links"])
            found[(row["a"], ref)] = RecordData(
                ref,
                fields=_fields_out(row["fields"]) if row["known"] else {},
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
            [_fields_in(d.fields) for _, d in known],
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
            ref = _ref(row["record_type"], row["record_id"])
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
                    _ref("organization", row["record_id"]),
                    fields=_fields_out(row["fields"]),
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
                (r["a"], _ref("organization", r["org"])),
                (r["a"], _ref("contact", r["contact"])),
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

    # --- lists ----------------------------------------------------------------------------

    async def list_kinds(self, keys: Sequence[ListKey]) -> dict[ListKey, ListKind]:
        rows = await self._conn.fetch(
            """SELECT l.account_id, l.list_id, l.kind FROM exclusion_lists l
               JOIN unnest($1::text[], $2::text[]) AS k(a, id)
                 ON l.account_id = k.a AND l.list_id = k.id""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["account_id"], r["list_id"]): ListKind(r["kind"]) for r in rows}

    async def list_hits(
        self, queries: Sequence[tuple[ListKey, Sequence[str]]]
    ) -> dict[ListKey, frozenset[str]]:
        flat = [(k[0], k[1], v) for k, values in queries for v in values]
        if not flat:
            return {}
        rows = await self._conn.fetch(
            """SELECT e.account_id, e.list_id, e.value FROM exclusion_list_entries e
               JOIN unnest($1::text[], $2::text[], $3::text[]) AS q(a, id, v)
                 ON e.account_id = q.a AND e.list_id = q.id AND e.value = q.v""",
            [f[0] for f in flat],
            [f[1] for f in flat],
            [f[2] for f in flat],
        )
        found: dict[ListKey, set[str]] = {}
        for row in rows:
            found.setdefault((row["account_id"], row["list_id"]), set()).add(row["value"])
        return {k: frozenset(v) for k, v in found.items()}

    async def save_list_chunks(self, chunks: Sequence[ListChunk]) -> None:
        for chunk in chunks:  # rare and ordered: two statements per chunk are fine
            # Apart: in one statement the delete would also take the entries inserted again.
            await self._conn.execute(
                """WITH head AS (
                       INSERT INTO exclusion_lists (account_id, list_id, kind, upload_id)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (account_id, list_id) DO UPDATE
                           SET kind = EXCLUDED.kind, upload_id = EXCLUDED.upload_id,
                               updated_at = now())
                   DELETE FROM exclusion_list_entries
                   WHERE account_id = $1 AND list_id = $2 AND $5 = 0""",
                chunk.account_id,
                chunk.list_id,
                chunk.kind.value,
                chunk.upload_id,
                chunk.chunk_index,
            )
            await self._conn.execute(
                """INSERT INTO exclusion_list_entries (account_id, list_id, value, line)
                   SELECT $1, $2, v, n FROM unnest($3::text[], $4::int[]) AS e(v, n)
                   ON CONFLICT (account_id, list_id, value) DO NOTHING""",
                chunk.account_id,
                chunk.list_id,
                list(chunk.entries),
                list(chunk.entries.values()),
            )

    async def audiences_of(
        self, keys: Sequence[tuple[str, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], str]:
        if not keys:
            return {}
        rows = await self._conn.fetch(
            """SELECT x.account_id, x.enrollment_id, x.audience_id FROM enrollment_audiences x
               JOIN unnest($1::text[], $2::uuid[]) AS k(a, id)
                 ON x.account_id = k.a AND x.enrollment_id = k.id""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["account_id"], r["enrollment_id"]): r["audience_id"] for r in rows}

    async def save_audiences(self, rows: Sequence[tuple[str, uuid.UUID, str]]) -> None:
        if not rows:
            return
        await self._conn.execute(
            """INSERT INTO enrollment_audiences (account_id, enrollment_id, audience_id)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[])
               ON CONFLICT DO NOTHING""",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )

    async def live_enrollments_page(
        self,
        account_id: str,
        workflow_id: str | None,
        *,
        after: uuid.UUID | None,
        limit: int,
        matching: RuleVersion | None = None,
    ) -> list[Enrollment]:
        params: list[Any] = [account_id, workflow_id, after, limit]
        test = rule_prefilter(matching, params) if matching is not None else "TRUE"
        rows = await self._conn.fetch(
            f"""SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
               WHERE e.account_id = $1 AND e.status IN ('active', 'paused')
                 AND ($2::text IS NULL OR e.workflow_id = $2)
                 AND ($3::uuid IS NULL OR e.enrollment_id > $3)
                 AND {test}
               ORDER BY e.enrollment_id LIMIT $4
               FOR UPDATE OF e""",
            *params,
        )
        return [enrollment_of(r) for r in rows]

    async def live_enrollments_on_list(
        self, key: ListKey, workflow_id: str | None, *, values: Sequence[str] | None = None
    ) -> list[Enrollment]:
        company = _COMPANY_NAME_SQL.format(col="r.company_name")
        rows = await self._conn.fetch(
            f"""WITH l AS (
                   SELECT kind FROM exclusion_lists WHERE account_id = $1 AND list_id = $2),
               wanted AS (
                   SELECT value FROM exclusion_list_entries
                   WHERE account_id = $1 AND list_id = $2
                     AND ($4::text[] IS NULL OR value = ANY($4::text[]))),
               matched AS (
                   SELECT x.record_type, x.record_id FROM crm_record_emails x
                   WHERE x.account_id = $1 AND (SELECT kind FROM l) = 'email'
                     AND x.email IN (SELECT value FROM wanted)
                   UNION
                   SELECT x.record_type, x.record_id FROM crm_record_domains x
                   WHERE x.account_id = $1 AND (SELECT kind FROM l) = 'domain'
                     AND x.domain IN (SELECT value FROM wanted)
                   UNION
                   SELECT r.record_type, r.record_id FROM crm_records r
                   WHERE r.account_id = $1 AND (SELECT kind FROM l) = 'company_name'
                     AND {company} IN (SELECT value FROM wanted)),
               reached AS (
                   SELECT record_type, record_id FROM matched
                   UNION
                   SELECT a.b_type, a.b_id FROM crm_associations a
                   JOIN matched m ON a.a_type = m.record_type AND a.a_id = m.record_id
                   WHERE a.account_id = $1 AND m.record_type = 'organization')
               SELECT {ENROLLMENT_COLUMNS} FROM enrollments e
               WHERE e.account_id = $1 AND e.status IN ('active', 'paused')
                 AND ($3::text IS NULL OR e.workflow_id = $3)
                 AND ((e.record_type, e.record_id) IN (SELECT * FROM reached)
                   OR ((SELECT kind FROM l) = 'email'
                       AND lower(e.contact->>'email') IN (SELECT value FROM wanted))
                   OR ((SELECT kind FROM l) = 'domain'
                       AND (lower(rtrim(e.contact->>'company_domain', '.')) IN (
                               SELECT value FROM wanted UNION SELECT 'www.' || value FROM wanted)
                            OR split_part(lower(e.contact->>'email'), '@', 2)
                               IN (SELECT value FROM wanted))))
               ORDER BY e.enrollment_id
               FOR UPDATE OF e""",
            key[0],
            key[1],
            workflow_id,
            list(values) if values is not None else None,
        )
        return [enrollment_of(r) for r in rows]
