"""trigger-evaluator's SQL about CRM record data: its projection of associations
(``record_links``), the live enrollments of a company's contacts, and the last snapshot of
each record's fields (``record_fields``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from services.trigger_evaluator.domain import CompanySearch
from services.trigger_evaluator.record_fields import RecordKey, Snapshot
from services.trigger_evaluator.record_links import RecordDataEvent, fold_record_data
from services.trigger_evaluator.repository_rows import ENROLLMENT, WITH_WORKFLOW, Keys, view
from services.trigger_evaluator.views import EnrollmentView
from shared.contracts import RecordRef, RecordType
from shared.db import DbConnection

# A company's live contact enrollments: the contacts of the CRM organizations associated
# with the search's anchors (and contact anchors themselves); only for a search whose
# anchors have no organization, the enrollments of its company domains.
_LIVE_BY_COMPANY = WITH_WORKFLOW.format(
    matches=f"""
        WITH anchor AS (
            SELECT * FROM unnest($4::int[], $5::text[], $6::text[], $7::text[])
                   AS a(idx, account_id, record_type, record_id)
        ), org AS (
            SELECT a.idx, a.account_id, l.linked_id AS org_id
            FROM anchor a
            JOIN record_links l
              ON l.account_id = a.account_id AND l.record_type = a.record_type
             AND l.record_id = a.record_id AND l.linked_type = 'organization'
            UNION
            SELECT a.idx, a.account_id, a.record_id FROM anchor a
            WHERE a.record_type = 'organization'
        ), member AS (
            SELECT o.idx, o.account_id, l.linked_id AS contact_id
            FROM org o
            JOIN record_links l
              ON l.account_id = o.account_id AND l.record_type = 'organization'
             AND l.record_id = o.org_id AND l.linked_type = 'contact'
            UNION
            SELECT a.idx, a.account_id, a.record_id FROM anchor a
            WHERE a.record_type = 'contact'
        )
        SELECT m.idx, {ENROLLMENT}
        FROM member m
        JOIN enrollments e
          ON e.account_id = m.account_id AND e.record_type = 'contact'
         AND e.record_id = m.contact_id AND e.status IN ('active', 'paused')
        UNION ALL
        SELECT k.idx, {ENROLLMENT}
        FROM unnest($1::int[], $2::text[], $3::text[]) AS k(idx, account_id, company_domain)
        JOIN enrollments e
          ON e.account_id = k.account_id AND e.company_domain = k.company_domain
         AND e.status IN ('active', 'paused')
        WHERE NOT EXISTS (SELECT 1 FROM org o WHERE o.idx = k.idx)
    """
)

# A run of record data in one statement (``record_links`` says how it folds): the rows of
# reset records and of removed pairs go, except the pairs the run leaves present, which
# are inserted if missing (one snapshot: a deleted row is never the one inserted).
_SAVE_LINKS = """
    WITH reset AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
               AS r(account_id, record_type, record_id)
    ), keep AS (
        SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
               AS p(account_id, record_type, record_id, linked_type, linked_id)
    ), gone AS (
        SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
               AS p(account_id, record_type, record_id, linked_type, linked_id)
    ), removed AS (
        DELETE FROM record_links l
        WHERE (EXISTS (SELECT 1 FROM reset r
                       WHERE r.account_id = l.account_id
                         AND ((r.record_type = l.record_type AND r.record_id = l.record_id)
                           OR (r.record_type = l.linked_type AND r.record_id = l.linked_id)))
               OR (l.account_id, l.record_type, l.record_id, l.linked_type, l.linked_id)
                  IN (SELECT * FROM gone))
          AND (l.account_id, l.record_type, l.record_id, l.linked_type, l.linked_id)
              NOT IN (SELECT * FROM keep)
    )
    INSERT INTO record_links SELECT * FROM keep ON CONFLICT DO NOTHING
"""


# The stored snapshots of a run's records, as they were before it; then each record's
# last snapshot of the run is stored, or forgotten (deleted). One statement: the SELECT
# sees the rows as they were when it began.
_SWAP_FIELDS = """
    WITH new AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
               AS n(account_id, record_type, record_id, fields)
    ), old AS (
        SELECT r.account_id, r.record_type, r.record_id, r.fields::text AS fields
        FROM record_fields r
        JOIN new n USING (account_id, record_type, record_id)
    ), gone AS (
        DELETE FROM record_fields r USING new n
        WHERE r.account_id = n.account_id AND r.record_type = n.record_type
          AND r.record_id = n.record_id AND n.fields IS NULL
    ), put AS (
        INSERT INTO record_fields (account_id, record_type, record_id, fields)
        SELECT account_id, record_type, record_id, fields::jsonb FROM new
        WHERE fields IS NOT NULL
        ON CONFLICT (account_id, record_type, record_id) DO UPDATE SET fields = EXCLUDED.fields
    )
    SELECT * FROM old
"""


class CompanyLinks:
    """``live_by_company``, ``save_record_links`` and ``swap_record_fields`` of
    ``PostgresTriggerEvaluatorStore``."""

    _conn: DbConnection

    async def live_by_company(
        self, searches: Sequence[CompanySearch]
    ) -> list[list[EnrollmentView]]:
        keys, anchors = Keys(2), Keys(3)
        for idx, search in enumerate(searches):
            for domain in search.domains:
                keys.add(idx, search.account_id, domain)
            for anchor in search.anchors:
                anchors.add(idx, search.account_id, anchor.type.value, anchor.id)
        found: list[dict[object, EnrollmentView]] = [{} for _ in searches]
        if not (keys or anchors):
            return [[] for _ in searches]
        for row in await self._conn.fetch(_LIVE_BY_COMPANY, *keys.args(), *anchors.args()):
            colleague = view(row)
            found[row["idx"]].setdefault(colleague.enrollment_id, colleague)
        return [sorted(views.values(), key=lambda v: v.enrollment_id) for views in found]

    async def save_record_links(self, events: Sequence[RecordDataEvent]) -> None:
        change = fold_record_data(events)
        if not (change.reset or change.pairs):
            return
        reset, keep, gone = Keys(3), Keys(5), Keys(5)
        for account_id, record in change.reset:
            reset.add(0, account_id, record.type.value, record.id)
        for keys, pairs in ((keep, change.present), (gone, change.absent)):
            for account_id, record, linked in pairs:
                keys.add(0, account_id, record.type.value, record.id, linked.type.value, linked.id)
        await self._conn.execute(_SAVE_LINKS, *reset.args()[1:], *keep.args()[1:], *gone.args()[1:])

    async def swap_record_fields(
        self, last: Mapping[RecordKey, Snapshot | None]
    ) -> dict[RecordKey, Snapshot]:
        if not last:
            return {}
        keys = list(last)
        rows = await self._conn.fetch(
            _SWAP_FIELDS,
            [account_id for account_id, _ in keys],
            [record.type.value for _, record in keys],
            [record.id for _, record in keys],
            [None if last[k] is None else json.dumps(last[k]) for k in keys],
        )
        return {
            (
                row["account_id"],
                RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
            ): (json.loads(row["fields"]))
            for row in rows
        }
