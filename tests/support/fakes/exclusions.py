"""``ExclusionStore`` in memory, with the SQL's semantics; mixed into the enrollment fake."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.enrollment.domain import Enrollment
from services.enrollment.exclusions import (
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
from shared.contracts import Actor, RecordRef, RecordType
from shared.contracts.commands import ContactDetails
from shared.contracts.exclusions import ListKind
from shared.domains import list_value

Link = tuple[str, RecordRef, RecordRef]


@dataclass
class FakeExclusionStore:
    rule_versions: dict[tuple[str, str, int], SavedRuleVersion] = field(default_factory=dict)
    rule_heads: dict[RuleKey, int] = field(default_factory=dict)
    saved_rulesets: dict[RulesetKey, dict[str, bool]] = field(default_factory=dict)
    records: dict[RecordKey, RecordData] = field(default_factory=dict)
    links: set[Link] = field(default_factory=set)
    suppressed: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    lists: dict[ListKey, tuple[ListKind, uuid.UUID]] = field(default_factory=dict)
    entries_of: dict[ListKey, dict[str, int]] = field(default_factory=dict)
    audiences: dict[tuple[str, uuid.UUID], str] = field(default_factory=dict)
    exclusion_locks: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)

    # provided by FakeEnrollmentStore
    enrollments: dict[tuple[str, uuid.UUID], Enrollment] = field(default_factory=dict)
    enrolled_with: dict[tuple[str, uuid.UUID], tuple[ContactDetails | None, Actor]] = field(
        default_factory=dict
    )

    def _called(self, name: str, rows: Sequence[object]) -> None:
        raise NotImplementedError

    def exclusion_snapshot(self) -> object:
        return (
            dict(self.rule_versions),
            dict(self.rule_heads),
            dict(self.saved_rulesets),
            dict(self.records),
            set(self.links),
            dict(self.suppressed),
            dict(self.lists),
            {k: dict(v) for k, v in self.entries_of.items()},
            dict(self.audiences),
        )

    async def lock_exclusions(self, accounts: Sequence[str], *, exclusive: bool) -> None:
        self._called("lock_exclusions", accounts)
        self.exclusion_locks.append((tuple(sorted(set(accounts))), exclusive))

    async def rules_for_update(self, keys: Sequence[RuleKey]) -> dict[RuleKey, RuleVersion]:
        self._called("rules_for_update", keys)
        return {
            k: self.rule_versions[(*k, v)].rule
            for k in keys
            if (v := self.rule_heads.get(k)) is not None
        }

    async def add_rule_versions(self, versions: Sequence[SavedRuleVersion]) -> None:
        self._called("add_rule_versions", versions)
        for saved in versions:
            rule = saved.rule
            key = (rule.account_id, rule.rule_id, rule.version)
            assert key not in self.rule_versions, "exclusion_rule_versions_pkey"
            self.rule_versions[key] = saved
            self.rule_heads[key[:2]] = rule.version

    async def account_rules(self, accounts: Sequence[str]) -> dict[str, list[RuleVersion]]:
        self._called("account_rules", accounts)
        found: dict[str, list[RuleVersion]] = {}
        for (account, rule_id), version in sorted(self.rule_heads.items()):
            if account in accounts:
                found.setdefault(account, []).append(
                    self.rule_versions[(account, rule_id, version)].rule
                )
        return found

    async def rulesets(self, keys: Sequence[RulesetKey]) -> dict[RulesetKey, dict[str, bool]]:
        self._called("rulesets", keys)
        return {k: dict(self.saved_rulesets[k]) for k in keys if k in self.saved_rulesets}

    async def put_rulesets(self, rows: Sequence[tuple[RulesetKey, Mapping[str, bool]]]) -> None:
        self._called("put_rulesets", rows)
        for key, toggles in rows:
            self.saved_rulesets[key] = dict(toggles)

    def _data(self, key: RecordKey) -> RecordData | None:
        account, ref = key
        linked = frozenset(b for a, x, b in self.links if a == account and x == ref)
        own = self.records.get(key)
        if own is None:
            return RecordData(ref, associations=linked, known=False) if linked else None
        return RecordData(
            ref,
            fields=dict(own.fields),
            email=own.email,
            aliases=own.aliases,
            company_name=own.company_name,
            domains=own.domains,
            associations=linked,
        )

    async def records_for_update(self, keys: Sequence[RecordKey]) -> dict[RecordKey, RecordData]:
        self._called("records_for_update", keys)
        return {k: d for k in dict.fromkeys(keys) if (d := self._data(k)) is not None}

    async def save_records(
        self, saved: Sequence[tuple[str, RecordData]], deleted: Sequence[RecordKey]
    ) -> None:
        self._called("save_records", [*saved, *deleted])
        latest = {(a, d.record): d for a, d in saved}
        touched = set(latest) | set(deleted)
        self.links = {
            (a, x, y) for a, x, y in self.links if (a, x) not in touched and (a, y) not in touched
        }
        for key in deleted:
            self.records.pop(key, None)
        for (account, ref), data in latest.items():
            if data.known:
                self.records[(account, ref)] = RecordData(
                    ref,
                    fields=dict(data.fields),
                    email=data.email,
                    aliases=data.aliases,
                    company_name=data.company_name,
                    domains=data.domains,
                )
            for other in data.associations:
                self.links |= {(account, ref, other), (account, other, ref)}

    async def subjects(
        self, keys: Sequence[RecordKey], fallback: Mapping[RecordKey, RecordData]
    ) -> dict[RecordKey, Subject]:
        self._called("subjects", keys)
        found: dict[RecordKey, Subject] = {}
        for key in dict.fromkeys(keys):
            account, ref = key
            data = self._data(key)
            own = data if data is not None and data.known else None
            own = own or fallback.get(key) or self._enrolled_contact(key)
            if own is not None and data is not None and not data.known:
                own = replace(own, associations=data.associations)  # the stub's links
            own = own or data
            if own is None:
                found[key] = Subject(ref)
                continue
            domains = set(record_domains(own))
            companies = tuple(
                self._data((account, org)) or RecordData(org)
                for (a, org), c in sorted(self.records.items(), key=lambda kv: kv[0][1].id)
                if a == account
                and org.type is RecordType.ORGANIZATION
                and org != ref
                and (org in own.associations or domains & set(record_domains(c)))
            )
            marks = {k for a, e, k in self.suppressed if a == account and e == own.email}
            found[key] = Subject(
                ref,
                own,
                companies=companies,
                hard_bounced="hard_bounced" in marks,
                unsubscribed="unsubscribed" in marks,
            )
        return found

    def _enrolled_contact(self, key: RecordKey) -> RecordData | None:
        latest = sorted(
            (e for k, e in self.enrollments.items() if (e.account_id, e.record) == key),
            key=lambda e: e.enrolled_at,
        )
        for enrollment in reversed(latest):
            contact, _ = self.enrolled_with.get(
                (enrollment.account_id, enrollment.enrollment_id), (None, None)
            )
            if contact is not None:
                domain = contact.company_domain
                return RecordData(
                    key[1],
                    email=contact.email,
                    aliases=contact.aliases,
                    domains=normalized_domains((domain,) if domain else ()),
                    known=False,
                )
        return None

    async def contacts_of_companies(
        self, keys: Sequence[RecordKey]
    ) -> list[tuple[RecordKey, RecordKey]]:
        self._called("contacts_of_companies", keys)
        found = set()
        for account, org in keys:
            company = self._data((account, org))
            domains = set(record_domains(company)) if company and company.known else set()
            for (a, ref), data in self.records.items():
                if a != account or ref.type is not RecordType.CONTACT:
                    continue
                if (account, org, ref) in self.links or domains & set(record_domains(data)):
                    found.add(((account, org), (account, ref)))
            for a, x, y in self.links:
                if a == account and x == org and y.type is RecordType.CONTACT:
                    found.add(((account, org), (account, y)))
        return sorted(found, key=lambda p: (p[0][0], p[0][1].id, p[1][1].id))

    async def add_suppressions(self, rows: Sequence[Suppression]) -> None:
        self._called("add_suppressions", rows)
        for row in rows:
            key = (row.account_id, row.email, row.kind)
            self.suppressed[key] = max(self.suppressed.get(key, row.at), row.at)

    async def list_kinds(self, keys: Sequence[ListKey]) -> dict[ListKey, ListKind]:
        self._called("list_kinds", keys)
        return {k: self.lists[k][0] for k in keys if k in self.lists}

    async def list_hits(
        self, queries: Sequence[tuple[ListKey, Sequence[str]]]
    ) -> dict[ListKey, frozenset[str]]:
        self._called("list_hits", queries)
        found = {
            key: frozenset(v for v in values if v in self.entries_of.get(key, {}))
            for key, values in queries
        }
        return {k: v for k, v in found.items() if v}

    async def save_list_chunks(self, chunks: Sequence[ListChunk]) -> None:
        self._called("save_list_chunks", chunks)
        for chunk in chunks:
            key = (chunk.account_id, chunk.list_id)
            self.lists[key] = (chunk.kind, chunk.upload_id)
            if chunk.chunk_index == 0:
                self.entries_of[key] = {}
            entries = self.entries_of.setdefault(key, {})
            for value, line in chunk.entries.items():
                entries.setdefault(value, line)

    async def audiences_of(
        self, keys: Sequence[tuple[str, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], str]:
        self._called("audiences_of", keys)
        return {k: self.audiences[k] for k in keys if k in self.audiences}

    async def save_audiences(self, rows: Sequence[tuple[str, uuid.UUID, str]]) -> None:
        self._called("save_audiences", rows)
        for account, enrollment_id, audience in rows:
            self.audiences.setdefault((account, enrollment_id), audience)

    async def live_enrollments_page(
        self,
        account_id: str,
        workflow_id: str | None,
        *,
        after: uuid.UUID | None,
        limit: int,
        matching: RuleVersion | None = None,  # a superset is allowed: all of them
    ) -> list[Enrollment]:
        self._called("live_enrollments_page", [account_id])
        live = sorted(
            (
                e
                for e in self.enrollments.values()
                if e.account_id == account_id
                and e.status.live
                and workflow_id in (None, e.workflow_id)
                and (after is None or e.enrollment_id > after)
            ),
            key=lambda e: e.enrollment_id,
        )
        return live[:limit]

    async def live_enrollments_on_list(
        self, key: ListKey, workflow_id: str | None, *, values: Sequence[str] | None = None
    ) -> list[Enrollment]:
        self._called("live_enrollments_on_list", [key])
        if key not in self.lists:
            return []
        kind = self.lists[key][0]
        wanted = set(self.entries_of.get(key, {}))
        if values is not None:
            wanted &= set(values)
        field_name = {ListKind.EMAIL: "email", ListKind.DOMAIN: "domain"}.get(kind, "company_name")
        live = [
            e
            for e in self.enrollments.values()
            if e.account_id == key[0] and e.status.live and workflow_id in (None, e.workflow_id)
        ]
        subjects = await self.subjects([(e.account_id, e.record) for e in live], {})
        return sorted(
            (
                e
                for e in live
                if any(
                    list_value(kind, str(v)) in wanted
                    for v in subjects[(e.account_id, e.record)].values(field_name)
                )
            ),
            key=lambda e: e.enrollment_id,
        )
