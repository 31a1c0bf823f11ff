"""Screening with exclusion rules: what a run loads once, and the decisions it makes.

``RuleBook.load`` reads, for the accounts and records of a run, the rules (built-ins
included), the rulesets of the workflows and audiences at hand, and what each uploaded
list the rules name holds of the records' values: four statements however long the
run. ``screen_enrolls`` rejects enrolls; ``removals`` takes enrolled records out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.enrollment import domain, exits
from services.enrollment.exclusions import (
    Context,
    ListHits,
    RecordData,
    RuleVersion,
    Subject,
    Target,
    applies,
    lists_named,
    matches,
    screen,
    with_builtins,
)
from services.enrollment.exclusions_ports import ExclusionStore, ListKey, RecordKey, RulesetKey
from services.enrollment.records import normalized_domains
from shared.contracts import SYSTEM_ACTOR, Message
from shared.contracts.commands import Enroll, ExitReason, ExitSource, TriggeringEvent
from shared.contracts.events import ExclusionHit, Rejection
from shared.contracts.exclusions import RulesetOwner
from shared.domains import list_value


@dataclass(frozen=True, slots=True)
class RuleBook:
    rules: Mapping[str, list[RuleVersion]]
    rulesets: Mapping[RulesetKey, Mapping[str, bool]]
    lists: Mapping[ListKey, ListHits]

    @staticmethod
    async def rules_of(
        store: ExclusionStore, accounts: Iterable[str]
    ) -> dict[str, list[RuleVersion]]:
        wanted = list(dict.fromkeys(accounts))
        stored = await store.account_rules(wanted) if wanted else {}
        return {a: with_builtins(a, stored.get(a, [])) for a in wanted}

    @staticmethod
    async def load(
        store: ExclusionStore,
        rules: Mapping[str, list[RuleVersion]],
        targets: Iterable[tuple[str, str, str | None]],
        subjects: Iterable[tuple[str, Subject]],
    ) -> RuleBook:
        """``targets``: (account, workflow id, audience id); ``subjects``: (account, subject)."""
        keys: dict[RulesetKey, None] = {}
        for account, workflow_id, audience_id in targets:
            keys[(account, RulesetOwner.WORKFLOW, workflow_id)] = None
            if audience_id is not None:
                keys[(account, RulesetOwner.AUDIENCE, audience_id)] = None
        rulesets = await store.rulesets(list(keys)) if keys else {}
        named = {
            (account, list_id): fields
            for account, account_rules in rules.items()
            for list_id, fields in lists_named(r for r in account_rules if r.active).items()
        }
        kinds = await store.list_kinds(list(named)) if named else {}
        queries: dict[ListKey, set[str]] = {key: set() for key in kinds}
        for account, subject in subjects:
            for (list_account, list_id), fields in named.items():
                kind = kinds.get((list_account, list_id))
                if list_account != account or kind is None:
                    continue
                for name in fields:
                    for value in subject.values(name):
                        if (normal := list_value(kind, str(value))) is not None:
                            queries[(account, list_id)].add(normal)
        asked = [(key, sorted(values)) for key, values in queries.items() if values]
        hits = await store.list_hits(asked) if asked else {}
        lists = {key: ListHits(kind, hits.get(key, frozenset())) for key, kind in kinds.items()}
        return RuleBook(rules, rulesets, lists)

    def target(self, account: str, workflow_id: str, audience_id: str | None) -> Target:
        return Target(
            workflow_id,
            audience_id,
            self.rulesets.get((account, RulesetOwner.WORKFLOW, workflow_id), {}),
            self.rulesets.get((account, RulesetOwner.AUDIENCE, audience_id), {})
            if audience_id
            else {},
        )

    def context(self, account: str, now: datetime) -> Context:
        return Context(now, {lid: hits for (a, lid), hits in self.lists.items() if a == account})


def fallback_of(command: Enroll) -> RecordData | None:
    """What an enroll says of its contact, for a record the CRM never sent."""
    contact = command.payload.contact
    if contact is None:
        return None
    domains = (contact.company_domain,) if contact.company_domain else ()
    return RecordData(
        command.payload.record,
        email=contact.email,
        aliases=contact.aliases,
        domains=normalized_domains(domains),
        known=False,
    )


def rejection(hit: ExclusionHit) -> Rejection:
    return Rejection(
        code="excluded",
        detail=f"exclusion rule {hit.rule_id} v{hit.version} ({hit.level}): {hit.condition}"[:2000],
        rule_id=hit.rule_id,
        exclusion=hit,
    )


async def screen_enrolls(
    store: ExclusionStore, commands: Sequence[Enroll], now: datetime
) -> dict[uuid.UUID, list[Rejection]]:
    """Every exclusion rule that rejects each enroll (manual ones included: there is no
    per-record override), by the enroll's message id."""
    if not commands:
        return {}
    accounts = list(dict.fromkeys(c.account_id for c in commands))
    await store.lock_exclusions(accounts, exclusive=False)
    keys = [(c.account_id, c.payload.record) for c in commands]
    fallback = {k: f for k, c in zip(keys, commands, strict=True) if (f := fallback_of(c))}
    subjects = await store.subjects(keys, fallback)
    rules = await RuleBook.rules_of(store, accounts)
    book = await RuleBook.load(
        store,
        rules,
        [(c.account_id, c.payload.workflow_id, c.payload.audience_id) for c in commands],
        [(k[0], subjects[k]) for k in keys if k in subjects],
    )
    found: dict[uuid.UUID, list[Rejection]] = {}
    for key, command in zip(keys, commands, strict=True):
        account, payload = command.account_id, command.payload
        subject = subjects.get(key) or Subject(payload.record)
        target = book.target(account, payload.workflow_id, payload.audience_id)
        hits = screen(rules[account], subject, target, book.context(account, now))
        if hits:
            found[command.message_id] = [rejection(h) for h in hits]
    return found


def trigger_of(cause: Message, topic: str) -> TriggeringEvent:
    return TriggeringEvent(
        message_id=cause.message_id, type=cause.type, topic=topic, occurred_at=cause.occurred_at
    )


def exit_excluded(
    enrollment: domain.Enrollment, hit: ExclusionHit, trigger: TriggeringEvent, now: datetime
) -> exits.Exited | exits.ExitPending | None:
    decision = exits.decide_exit(
        enrollment,
        reason=ExitReason.EXCLUSION_MATCHED,
        source=ExitSource.EXCLUSION,
        actor=SYSTEM_ACTOR,
        triggering_event=trigger,
        agents_may_stop=True,
        now=now,
        exclusion=hit,
    )
    return None if isinstance(decision, domain.Unchanged) else decision


async def removals(
    store: ExclusionStore,
    enrollments: Sequence[domain.Enrollment],
    rules: Mapping[str, list[RuleVersion]],
    now: datetime,
    *,
    only: RuleVersion | None = None,
) -> list[tuple[domain.Enrollment, ExclusionHit]]:
    """The enrollments a *remove* rule in force takes out (``only``: just that rule), with
    the first such rule by id; ``rules`` by account."""
    if not enrollments:
        return []
    audiences = await store.audiences_of([(e.account_id, e.enrollment_id) for e in enrollments])
    keys: list[RecordKey] = list(dict.fromkeys((e.account_id, e.record) for e in enrollments))
    subjects = await store.subjects(keys, {})
    targets = [
        (e.account_id, e.workflow_id, audiences.get((e.account_id, e.enrollment_id)))
        for e in enrollments
    ]
    book = await RuleBook.load(
        store, rules, targets, [(k[0], subjects[k]) for k in keys if k in subjects]
    )
    found = []
    contexts: dict[str, Context] = {}
    for enrollment, (account, workflow_id, audience_id) in zip(enrollments, targets, strict=True):
        subject = subjects.get((account, enrollment.record)) or Subject(enrollment.record)
        target = book.target(account, workflow_id, audience_id)
        if account not in contexts:
            contexts[account] = book.context(account, now)
        ctx = contexts[account]
        if only is not None:
            hit = matches(only, subject, ctx) if only.removes and applies(only, target) else None
            hits = [hit] if hit else []
        else:
            hits = screen(rules.get(account, []), subject, target, ctx, removing_only=True)
        if hits:
            found.append((enrollment, hits[0]))
    return found


def removing_accounts(rules: Mapping[str, list[RuleVersion]]) -> set[str]:
    return {account for account, found in rules.items() if any(r.removes for r in found)}


async def excluded_at_send(
    store: ExclusionStore, enrollments: Sequence[domain.Enrollment], now: datetime
) -> list[tuple[domain.Enrollment, ExclusionHit]]:
    """The enrollments a *remove* rule in force matches now, for a send-time re-check: a
    rule that starts to match with time alone (``within_days``, ``older_than_days``)
    has no event to act on. Exit them (``exit_excluded``) instead of sending."""
    rules = await RuleBook.rules_of(store, (e.account_id for e in enrollments))
    if not removing_accounts(rules):
        return []
    return await removals(store, enrollments, rules, now)
