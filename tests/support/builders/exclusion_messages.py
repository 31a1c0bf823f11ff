"""One message of every exclusion type (commands and events), for round trips."""

from __future__ import annotations

import uuid

from shared.contracts import Message
from shared.contracts.exclusions import (
    BadEntry,
    DeleteExclusionRule,
    DisableExclusionRule,
    EnableExclusionRule,
    ExclusionListChunk,
    ExclusionListChunkApplied,
    ExclusionListMatchesExited,
    ExclusionRejected,
    ExclusionRejectedPayload,
    ExclusionRulesetChanged,
    ExclusionRuleVersioned,
    ExitListMatches,
    ListChunkAppliedPayload,
    ListChunkPayload,
    ListExitPayload,
    ListKind,
    ListMatchesExitedPayload,
    Problem,
    PutExclusionRule,
    PutExclusionRuleset,
    PutRulePayload,
    PutRulesetPayload,
    RuleChange,
    RulesetOwner,
    RulesetPayload,
    RuleStatePayload,
    RuleVersionPayload,
)
from tests.support.builders.exclusions import ACCOUNT, ADMIN, cond, rule_def

UPLOAD = uuid.UUID("5b0c6f7e-0d7c-4a43-9a40-0d5b0c1e2f33")


def exclusion_messages() -> list[Message]:
    definition = rule_def("r-1", cond("tags", "in", ("a", "b")), cond("score", "greater", 3))
    state = RuleStatePayload(actor=ADMIN, rule_id="r-1")
    return [
        PutExclusionRule.create(
            account_id=ACCOUNT, payload=PutRulePayload(actor=ADMIN, definition=definition)
        ),
        DisableExclusionRule.create(account_id=ACCOUNT, payload=state),
        EnableExclusionRule.create(account_id=ACCOUNT, payload=state),
        DeleteExclusionRule.create(account_id=ACCOUNT, payload=state),
        PutExclusionRuleset.create(
            account_id=ACCOUNT,
            payload=PutRulesetPayload(
                actor=ADMIN, owner=RulesetOwner.WORKFLOW, owner_id="wf-1", toggles={"r-1": False}
            ),
        ),
        ExclusionListChunk.create(
            account_id=ACCOUNT,
            payload=ListChunkPayload(
                actor=ADMIN,
                list_id="l-1",
                kind=ListKind.DOMAIN,
                upload_id=UPLOAD,
                chunk_index=0,
                first_line=2,
                entries=("acme.com",),
            ),
        ),
        ExitListMatches.create(
            account_id=ACCOUNT, payload=ListExitPayload(actor=ADMIN, list_id="l-1")
        ),
        ExclusionRuleVersioned.create(
            account_id=ACCOUNT,
            payload=RuleVersionPayload(
                rule_id="r-1",
                version=2,
                change=RuleChange.UPDATED,
                enabled=True,
                deleted=False,
                definition=definition,
                actor=ADMIN,
            ),
        ),
        ExclusionRejected.create(
            account_id=ACCOUNT,
            payload=ExclusionRejectedPayload(
                command_type="exclusion_rule.put",
                rule_id="r-1",
                actor=ADMIN,
                problems=(Problem(code="unknown_operator", detail="x resembles 1"),),
            ),
        ),
        ExclusionRulesetChanged.create(
            account_id=ACCOUNT,
            payload=RulesetPayload(
                owner=RulesetOwner.AUDIENCE, owner_id="aud-1", toggles={}, actor=ADMIN
            ),
        ),
        ExclusionListChunkApplied.create(
            account_id=ACCOUNT,
            payload=ListChunkAppliedPayload(
                list_id="l-1",
                upload_id=UPLOAD,
                chunk_index=0,
                accepted=1,
                bad=(BadEntry(line=3, value="not a domain", reason="not a domain name"),),
            ),
        ),
        ExclusionListMatchesExited.create(
            account_id=ACCOUNT, payload=ListMatchesExitedPayload(list_id="l-1", exited=3)
        ),
    ]
