"""The exclusions' SQL: ``PostgresExclusionStore``, mixed into ``PostgresEnrollmentStore``.

Same rules as ``repository``: many rows in, one statement (``unnest`` arrays), every row
keyed by account.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from services.enrollment.domain import Enrollment
from services.enrollment.exclusions import (
    BUILTIN_FIELDS,
    COMPANY_PREFIX,
    RuleVersion,
)
from services.enrollment.exclusions_ports import (
    ListChunk,
    ListKey,
    RuleKey,
    RulesetKey,
    SavedRuleVersion,
)
from services.enrollment.records_repository import (
    COMPANY_NAME_SQL,
    PostgresRecordStore,
)
from services.enrollment.rows import ENROLLMENT_COLUMNS, enrollment_of
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


class PostgresExclusionStore(PostgresRecordStore):
    """``ExclusionStore`` on the transaction's connection (``self._conn``): rules, rulesets,
    lists and audiences here; the record projection in ``PostgresRecordStore``."""

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
        company = COMPANY_NAME_SQL.format(col="r.company_name")
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
