"""What exclusions need from enrollment's storage: the ``ExclusionStore`` port.

``EnrollmentStore`` extends it (one store, one transaction per run);
``exclusions_repository.PostgresExclusionStore`` is the SQL, ``tests/support/fakes``
holds the in-memory one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.enrollment.domain import Enrollment
from services.enrollment.exclusions import RecordData, RuleVersion, Subject
from shared.contracts import Actor, RecordRef
from shared.contracts.exclusions import ListKind, RuleChange, RulesetOwner

RuleKey = tuple[str, str]
"""(account id, rule id)"""

RulesetKey = tuple[str, RulesetOwner, str]
"""(account id, owner kind, workflow or audience id)"""

ListKey = tuple[str, str]
"""(account id, list id)"""

RecordKey = tuple[str, RecordRef]
"""(account id, record)"""


@dataclass(frozen=True, slots=True)
class SavedRuleVersion:
    """A rule version to write, with what changed and who changed it."""

    rule: RuleVersion
    change: RuleChange
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address that hard-bounced or unsubscribed: built-in rules block it."""

    account_id: str
    email: str
    kind: str  # "hard_bounced" | "unsubscribed"
    at: datetime


@dataclass(frozen=True, slots=True)
class ListChunk:
    """Normalised entries of one chunk of an upload; chunk 0 starts the list afresh."""

    account_id: str
    list_id: str
    kind: ListKind
    upload_id: uuid.UUID
    chunk_index: int
    entries: Mapping[str, int]
    """Normalised value -> its file line."""


class ExclusionStore(Protocol):
    """Each method takes many rows and costs one statement (``subjects`` three)."""

    async def lock_exclusions(self, accounts: Sequence[str], *, exclusive: bool) -> None:
        """Until commit: exclusive for a run that changes rules or lists, shared for one
        that decides with them (enrolls, record changes), so no enroll is admitted on
        rules a concurrent change is replacing without that change seeing it."""
        ...

    async def rules_for_update(self, keys: Sequence[RuleKey]) -> dict[RuleKey, RuleVersion]:
        """The current version of each stored rule, locked."""
        ...

    async def add_rule_versions(self, versions: Sequence[SavedRuleVersion]) -> None:
        """Add each version and make it its rule's current one (the last one wins)."""
        ...

    async def account_rules(self, accounts: Sequence[str]) -> dict[str, list[RuleVersion]]:
        """Each account's stored rules at their current version (built-ins not included
        unless changed: see ``exclusions.with_builtins``)."""
        ...

    async def rulesets(self, keys: Sequence[RulesetKey]) -> dict[RulesetKey, dict[str, bool]]: ...

    async def put_rulesets(self, rows: Sequence[tuple[RulesetKey, Mapping[str, bool]]]) -> None:
        """Replace each ruleset's toggles (the last one wins)."""
        ...

    async def records_for_update(self, keys: Sequence[RecordKey]) -> dict[RecordKey, RecordData]:
        """The projection of each known record, locked (its events apply in order)."""
        ...

    async def save_records(
        self, saved: Sequence[tuple[str, RecordData]], deleted: Sequence[RecordKey]
    ) -> None:
        """Write each record's final state (its associations replace every link it had,
        on both sides) and forget the deleted ones and their links."""
        ...

    async def subjects(
        self, keys: Sequence[RecordKey], fallback: Mapping[RecordKey, RecordData]
    ) -> dict[RecordKey, Subject]:
        """What rules read of each record: its data (``fallback`` for one the CRM never
        sent), its companies (associated organizations and those sharing its domains)
        and whether its current address hard-bounced or unsubscribed."""
        ...

    async def contacts_of_companies(
        self, keys: Sequence[RecordKey]
    ) -> list[tuple[RecordKey, RecordKey]]:
        """(organization, contact) for each contact associated with each organization or
        sharing one of its domains."""
        ...

    async def add_suppressions(self, rows: Sequence[Suppression]) -> None: ...

    async def list_kinds(self, keys: Sequence[ListKey]) -> dict[ListKey, ListKind]: ...

    async def list_hits(
        self, queries: Sequence[tuple[ListKey, Sequence[str]]]
    ) -> dict[ListKey, frozenset[str]]:
        """Which of the given normalised values each list holds."""
        ...

    async def save_list_chunks(self, chunks: Sequence[ListChunk]) -> None: ...

    async def audiences_of(
        self, keys: Sequence[tuple[str, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], str]:
        """The audience each enrollment came from, for those that named one."""
        ...

    async def save_audiences(self, rows: Sequence[tuple[str, uuid.UUID, str]]) -> None:
        """(account, enrollment id, audience id) of new enrollments."""
        ...

    async def live_enrollments_page(
        self,
        account_id: str,
        workflow_id: str | None,
        *,
        after: uuid.UUID | None,
        limit: int,
        matching: RuleVersion | None = None,
    ) -> list[Enrollment]:
        """Up to ``limit`` live enrollments of the account (or of one workflow) by id,
        after ``after``, locked; with ``matching``, only (a superset of) those the rule may
        match, found set-based."""
        ...

    async def live_enrollments_on_list(
        self, key: ListKey, workflow_id: str | None, *, values: Sequence[str] | None = None
    ) -> list[Enrollment]:
        """The live enrollments whose record (or its company) matches the list by its
        kind, or only by ``values`` of it; locked."""
        ...
