"""Exclusion subscribers: rules, rulesets and lists in; record data and suppressions from
upstream; exits of records that now match a *remove* rule out.

Same shape as ``handlers``: load once per run, decide with the pure modules
(``exclusion_rules``, ``records``, ``exclusions``), save in bulk, publish. A rule change
sweeps the account's live enrollments page by page (``SWEEP_PAGE`` per page, a fixed
number of statements each), so 100,000 enrollments are a few dozen statements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from services.enrollment import domain, exclusion_messages, exits, handlers
from services.enrollment.config import EnrollmentSettings
from services.enrollment.exclusion_rules import (
    Refusal,
    RuleCommand,
    Versioned,
    current_or_builtin,
    decide_rule,
    decide_ruleset,
)
from services.enrollment.exclusion_rules_lists import ChunkDecision, decide_chunk
from services.enrollment.exclusions import RuleVersion, lists_named
from services.enrollment.exclusions_ports import RecordKey, SavedRuleVersion, Suppression
from services.enrollment.ports import EnrollmentStore
from services.enrollment.recording import record, save_changes
from services.enrollment.records import CrmRecordEvent, Projection, records_named
from services.enrollment.screening import (
    RuleBook,
    exit_excluded,
    removals,
    removing_accounts,
    trigger_of,
)
from shared.consumer import Handler
from shared.contracts import Message, RecordType, topics
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.exclusions import (
    DeleteExclusionRule,
    DisableExclusionRule,
    EnableExclusionRule,
    ExclusionListChunk,
    ExitListMatches,
    PutExclusionRule,
    PutExclusionRuleset,
    RuleLevel,
    RulesetOwner,
)
from shared.contracts.inbound import (
    AssociationChanged,
    BounceKind,
    DealStageChanged,
    EmailBounced,
    EmailUnsubscribed,
    RecordDeleted,
    RecordFieldChanged,
    RecordUpserted,
)
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

Uow = UnitOfWork[EnrollmentStore]

SWEEP_PAGE = 5000
"""Live enrollments screened per page when a rule change sweeps an account."""


async def _exit_all(
    uow: Uow, found: Sequence[tuple[exits.Exited | exits.ExitPending, Message]], now: datetime
) -> None:
    """Save and publish exits (an enrollment with a granted send exits once it is
    settled, see ``exits.decide_exit``)."""
    await save_changes(uow.store, [d for d, _ in found])
    await record(uow, found, now)


async def _sweep(
    uow: Uow, rule: RuleVersion, cause: Message, now: datetime, *, workflow_id: str | None = None
) -> int:
    """Exit every live enrollment of the account (or of ``workflow_id``) that ``rule`` (a
    *remove* rule) matches."""
    definition = rule.definition
    if definition.level is RuleLevel.WORKFLOW:
        workflow_id = definition.workflow_id
    rules = {rule.account_id: [rule]}
    trigger = trigger_of(cause, topics.COMMANDS)
    after = None
    exited = 0
    while True:
        page = await uow.store.live_enrollments_page(
            rule.account_id, workflow_id, after=after, limit=SWEEP_PAGE, matching=rule
        )
        if not page:
            break
        hits = await removals(uow.store, page, rules, now, only=rule)
        found = [(d, cause) for e, h in hits if (d := exit_excluded(e, h, trigger, now))]
        await _exit_all(uow, found, now)
        exited += len(found)
        if len(page) < SWEEP_PAGE:
            break
        after = page[-1].enrollment_id
    return exited


async def rule_commands(uow: Uow, commands: list[RuleCommand], now: datetime) -> None:
    """Each rule command becomes the rule's next version, or a rejection with every
    problem; a new version of a *remove* rule in force exits what it matches, at once."""
    store = uow.store
    accounts = list(dict.fromkeys(c.account_id for c in commands))
    await store.lock_exclusions(accounts, exclusive=True)
    keys = [(c.account_id, _rule_id(c)) for c in commands]
    stored = await store.rules_for_update(keys)
    workflows = await store.current_workflows(
        [
            (c.account_id, c.payload.definition.workflow_id)
            for c in commands
            if isinstance(c, PutExclusionRule) and c.payload.definition.workflow_id
        ]
    )
    list_keys = [
        (c.account_id, list_id)
        for c in commands
        if isinstance(c, PutExclusionRule)
        for list_id in lists_named([RuleVersion(c.account_id, c.payload.definition, 1)])
    ]
    kinds = await store.list_kinds(list_keys) if list_keys else {}
    current: dict[tuple[str, str], RuleVersion | None] = {
        k: current_or_builtin(k[0], k[1], stored.get(k)) for k in keys
    }
    decided: list[tuple[Versioned | Refusal, RuleCommand]] = []
    for key, command in zip(keys, commands, strict=True):
        workflow_id = (
            command.payload.definition.workflow_id
            if isinstance(command, PutExclusionRule)
            else None
        )
        decision = decide_rule(
            command,
            current[key],
            workflow_known=(command.account_id, workflow_id or "") in workflows,
            list_kinds={lid: kind for (a, lid), kind in kinds.items() if a == command.account_id},
            now=now,
        )
        if isinstance(decision, domain.Unchanged):
            log.info("exclusion_rule_unchanged", rule_id=key[1], why=decision.why)
            continue
        if isinstance(decision, Versioned):
            current[key] = decision.rule
        decided.append((decision, command))
    await store.add_rule_versions(
        [
            SavedRuleVersion(d.rule, d.change, d.actor, d.at)
            for d, _ in decided
            if isinstance(d, Versioned)
        ]
    )
    for decision, command in decided:
        uow.publish(exclusion_messages.of(decision, command))
        if isinstance(decision, Versioned) and decision.rule.removes:
            exited = await _sweep(uow, decision.rule, command, now)
            log.info("exclusion_rule_swept", rule_id=decision.rule.rule_id, exited=exited)


def _rule_id(command: RuleCommand) -> str:
    if isinstance(command, PutExclusionRule):
        return command.payload.definition.rule_id
    return command.payload.rule_id


async def put_rulesets(uow: Uow, commands: list[PutExclusionRuleset], now: datetime) -> None:
    """Replace a workflow's or an audience's toggles of the global rules."""
    await uow.store.lock_exclusions([c.account_id for c in commands], exclusive=True)
    workflows = await uow.store.current_workflows(
        [
            (c.account_id, c.payload.owner_id)
            for c in commands
            if c.payload.owner is RulesetOwner.WORKFLOW
        ]
    )
    decided = [
        (
            decide_ruleset(c, workflow_known=(c.account_id, c.payload.owner_id) in workflows),
            c,
        )
        for c in commands
    ]
    await uow.store.put_rulesets(
        [
            ((d.account_id, d.owner, d.owner_id), d.toggles)
            for d, _ in decided
            if not isinstance(d, Refusal)
        ]
    )
    for decision, command in decided:
        uow.publish(exclusion_messages.of(decision, command))
    # A rule a ruleset turned back on may now take enrolled records out.
    rules = await RuleBook.rules_of(uow.store, [c.account_id for c in commands])
    for decision, command in decided:
        if isinstance(decision, Refusal):
            continue
        scope = decision.owner_id if decision.owner is RulesetOwner.WORKFLOW else None
        for rule in rules[decision.account_id]:
            if rule.removes and decision.toggles.get(rule.rule_id, True):
                await _sweep(uow, rule, command, now, workflow_id=scope)


async def list_chunks(uow: Uow, commands: list[ExclusionListChunk], now: datetime) -> None:
    """Store each chunk of an upload (bad rows reported, good ones kept); a *remove*
    rule that reads the list exits the records the chunk's entries now match."""
    store = uow.store
    accounts = list(dict.fromkeys(c.account_id for c in commands))
    await store.lock_exclusions(accounts, exclusive=True)
    decided: list[ChunkDecision] = [decide_chunk(c) for c in commands]
    await store.save_list_chunks([d.chunk for d in decided])
    for decision in decided:
        uow.publish(exclusion_messages.of(decision, decision.command))
    rules = await RuleBook.rules_of(store, accounts)
    for decision in decided:
        chunk = decision.chunk
        readers = [
            r for r in rules[chunk.account_id] if r.removes and chunk.list_id in lists_named([r])
        ]
        if not readers or not chunk.entries:
            continue
        live = await store.live_enrollments_on_list(
            (chunk.account_id, chunk.list_id), None, values=sorted(chunk.entries)
        )
        trigger = trigger_of(decision.command, topics.COMMANDS)
        hits = await removals(store, live, {chunk.account_id: readers}, now)
        found = [(d, decision.command) for e, h in hits if (d := exit_excluded(e, h, trigger, now))]
        await _exit_all(uow, found, now)


async def exit_list_matches(uow: Uow, commands: list[ExitListMatches], now: datetime) -> None:
    """Bulk exit: every live enrollment matching the list (by email, domain or company
    name, as the list holds) exits, as a manual bulk exit by the command's actor."""
    store = uow.store
    for command in commands:
        payload = command.payload
        key = (command.account_id, payload.list_id)
        if not await store.list_kinds([key]):
            problem = f"no uploaded list {payload.list_id!r} in this account"
            refusal = Refusal(
                command,
                (exclusion_messages.problem("unknown_list", problem),),
                list_id=payload.list_id,
            )
            uow.publish(exclusion_messages.of(refusal, command))
            continue
        live = await store.live_enrollments_on_list(key, payload.workflow_id)
        versions = await store.workflow_versions(
            [(e.account_id, e.workflow_id, e.workflow_version) for e in live]
        )
        found: list[tuple[exits.Exited | exits.ExitPending, Message]] = []
        for enrollment in live:
            workflow = versions.get(
                (enrollment.account_id, enrollment.workflow_id, enrollment.workflow_version)
            )
            decision = exits.decide_exit(
                enrollment,
                reason=ExitReason.MANUAL,
                source=ExitSource.BULK,
                actor=payload.actor,
                triggering_event=trigger_of(command, topics.COMMANDS),
                agents_may_stop=workflow.definition.settings.agents_may_stop if workflow else True,
                now=now,
            )
            if not isinstance(decision, domain.Unchanged):
                found.append((decision, command))
        await _exit_all(uow, found, now)
        uow.publish(
            exclusion_messages.matches_exited(
                command, payload.list_id, payload.workflow_id, len(found)
            )
        )


async def crm_records(uow: Uow, events: list[CrmRecordEvent], now: datetime) -> None:
    """Apply record data in order, then exit the enrollments of every record (and, for
    an organization, every contact of it) that a *remove* rule in force now matches."""
    store = uow.store
    accounts = list(dict.fromkeys(e.account_id for e in events))
    await store.lock_exclusions(accounts, exclusive=False)
    named = [(e.account_id, ref) for e in events for ref in records_named(e)]
    loaded = await store.records_for_update(list(dict.fromkeys(named)))
    projections: dict[str, Projection] = {
        a: Projection(a, {ref: data for (acc, ref), data in loaded.items() if acc == a})
        for a in accounts
    }
    cause_of: dict[RecordKey, Message] = {}
    for event in events:
        projections[event.account_id].apply(event)
        for ref in records_named(event):
            cause_of[(event.account_id, ref)] = event
    await store.save_records(
        [(a, data) for a, p in projections.items() for data in p.saved()],
        [(a, ref) for a, p in projections.items() for ref in p.deleted],
    )
    rules = await RuleBook.rules_of(store, accounts)
    removing = removing_accounts(rules)
    if not removing:
        return
    affected = {k: c for k, c in cause_of.items() if k[0] in removing}
    companies = [k for k in affected if k[1].type is RecordType.ORGANIZATION]
    if companies:
        for company, contact in await store.contacts_of_companies(companies):
            affected.setdefault(contact, affected[company])
    live = await store.live_enrollments_for_update(list(affected))
    hits = await removals(store, live, rules, now)
    found = []
    for enrollment, hit in hits:
        cause = affected[(enrollment.account_id, enrollment.record)]
        decision = exit_excluded(enrollment, hit, trigger_of(cause, topics.INBOUND_CRM), now)
        if decision is not None:
            found.append((decision, cause))
    await _exit_all(uow, found, now)
    if found:
        log.info("exclusion_exits", count=len(found))


async def suppressions(
    uow: Uow, events: list[EmailBounced | EmailUnsubscribed], now: datetime
) -> None:
    """Remember hard-bounced and unsubscribed addresses (the built-in rules block them)."""
    rows = [
        Suppression(
            e.account_id,
            e.payload.from_address,
            "unsubscribed" if isinstance(e, EmailUnsubscribed) else "hard_bounced",
            e.occurred_at,
        )
        for e in events
        if isinstance(e, EmailUnsubscribed) or e.payload.bounce is BounceKind.HARD
    ]
    await uow.store.add_suppressions(rows)
    del now


def build_exclusion_handlers() -> Mapping[str, Handler]:
    rules: Handler = rule_commands
    crm: Handler = crm_records
    email: Handler = suppressions
    return {
        # One handler for every rule command, so a mixed run stays in order.
        PutExclusionRule.TYPE: rules,
        DisableExclusionRule.TYPE: rules,
        EnableExclusionRule.TYPE: rules,
        DeleteExclusionRule.TYPE: rules,
        PutExclusionRuleset.TYPE: put_rulesets,
        ExclusionListChunk.TYPE: list_chunks,
        ExitListMatches.TYPE: exit_list_matches,
        **dict.fromkeys(
            (
                RecordUpserted.TYPE,
                RecordDeleted.TYPE,
                AssociationChanged.TYPE,
                DealStageChanged.TYPE,
                RecordFieldChanged.TYPE,
            ),
            crm,
        ),
        EmailBounced.TYPE: email,
        EmailUnsubscribed.TYPE: email,
    }


def build_all_handlers(settings: EnrollmentSettings) -> Mapping[str, Handler]:
    """Every handler of the enrollment service: enrollments and exclusions."""
    return {**handlers.build_handlers(settings), **build_exclusion_handlers()}
