"""Exclusion decisions as outgoing messages on ``offramp.exclusion.events.v1``.

Ids derive from the command (``domain.event_id``): a replayed command publishes the same
ids, and subscribers drop the repeat.
"""

from __future__ import annotations

from services.enrollment import domain
from services.enrollment.exclusion_rules import ExclusionDecision, Refusal, RulesetPut, Versioned
from services.enrollment.exclusion_rules_lists import ChunkDecision
from shared.contracts import Message
from shared.contracts.exclusions import (
    ExclusionListChunkApplied,
    ExclusionListMatchesExited,
    ExclusionRejected,
    ExclusionRejectedPayload,
    ExclusionRulesetChanged,
    ExclusionRuleVersioned,
    ListChunkAppliedPayload,
    ListMatchesExitedPayload,
    Problem,
    RulesetPayload,
    RuleVersionPayload,
)


def of(decision: ExclusionDecision, cause: Message) -> Message:
    """The event ``decision`` publishes; ``cause`` is the command that led to it."""
    account = cause.account_id
    match decision:
        case Versioned(rule=rule):
            return ExclusionRuleVersioned.create(
                message_id=domain.event_id(
                    "rule_versioned", account, cause.message_id, rule.rule_id
                ),
                account_id=account,
                caused_by=cause,
                payload=RuleVersionPayload(
                    rule_id=rule.rule_id,
                    version=rule.version,
                    change=decision.change,
                    enabled=rule.enabled,
                    deleted=rule.deleted,
                    definition=rule.definition,
                    actor=decision.actor,
                ),
            )
        case Refusal():
            actor = getattr(cause.payload, "actor")  # noqa: B009 - every exclusion command has one
            return ExclusionRejected.create(
                message_id=domain.event_id("exclusion_rejected", account, cause.message_id, "-"),
                account_id=account,
                caused_by=cause,
                payload=ExclusionRejectedPayload(
                    command_type=cause.type,
                    rule_id=decision.rule_id,
                    list_id=decision.list_id,
                    actor=actor,
                    problems=decision.problems,
                ),
            )
        case RulesetPut():
            return ExclusionRulesetChanged.create(
                message_id=domain.event_id("ruleset_changed", account, cause.message_id, "-"),
                account_id=account,
                caused_by=cause,
                payload=RulesetPayload(
                    owner=decision.owner,
                    owner_id=decision.owner_id,
                    toggles=dict(decision.toggles),
                    actor=decision.actor,
                ),
            )
        case ChunkDecision(chunk=chunk):
            return ExclusionListChunkApplied.create(
                message_id=domain.event_id("chunk_applied", account, cause.message_id, "-"),
                account_id=account,
                caused_by=cause,
                payload=ListChunkAppliedPayload(
                    list_id=chunk.list_id,
                    upload_id=chunk.upload_id,
                    chunk_index=chunk.chunk_index,
                    accepted=len(chunk.entries),
                    bad=decision.bad,
                ),
            )


def problem(code: str, detail: str) -> Problem:
    return Problem(code=code, detail=detail)


def matches_exited(cause: Message, list_id: str, workflow_id: str | None, exited: int) -> Message:
    return ExclusionListMatchesExited.create(
        message_id=domain.event_id("list_exited", cause.account_id, cause.message_id, list_id),
        account_id=cause.account_id,
        caused_by=cause,
        payload=ListMatchesExitedPayload(list_id=list_id, workflow_id=workflow_id, exited=exited),
    )
