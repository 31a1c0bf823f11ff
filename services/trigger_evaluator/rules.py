"""The rules a workflow sets on its triggers: whether an event that fires a trigger the
workflow turned on meets them. Pure.

Each check answers with why the event does not count for this workflow (kept with the
decision, for explanations), or None when it does: page visits against URL rules, field
changes against field rules, conversation messages against the channels that count,
link clicks against link scanners, deal stages against the chosen stages.
"""

from __future__ import annotations

from datetime import datetime

from services.trigger_evaluator import fields, urls
from services.trigger_evaluator.triggers import Signal
from shared.contracts.workflow import ExitTrigger, WorkflowSettings

LINK_SCANNER_AGENTS: tuple[str, ...] = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "messagelabs",
    "symantec",
    "trend micro",
    "trendmicro",
    "fireeye",
    "ironport",
    "forcepoint",
    "sophos",
    "safelinks",
    "bingpreview",
    "python-requests",
    "go-http-client",
    "curl/",
    "wget/",
)
"""User agents of security gateways and bots that follow every link of a delivered email."""


def why_not(
    signal: Signal, trigger: ExitTrigger, settings: WorkflowSettings, *, sent_at: datetime | None
) -> str | None:
    """Why ``signal`` does not fire ``trigger`` under ``settings``' rules, or None.

    ``sent_at`` is when the clicked email was sent (link clicks found by their email).
    """
    facts = signal.facts
    match trigger:
        case ExitTrigger.PAGE_VISITED if settings.page_rules and facts.url is not None:
            if urls.first_match(settings.page_rules, facts.url) is None:
                count = len(settings.page_rules)
                return f"page {facts.url} matches none of the workflow's {count} URL rule(s)"
        case ExitTrigger.FIELD_CHANGED if settings.field_rules and facts.changes:
            met = any(
                fields.first_rule_met(settings.field_rules, field, value, signal.occurred_at)
                for field, value in facts.changes
            )
            if not met:
                names = ", ".join(field for field, _ in facts.changes)
                return f"field(s) {names} changed, but no field rule of the workflow is met"
        case ExitTrigger.MESSAGE_RECEIVED | ExitTrigger.MESSAGE_SENT_BY_PERSON if (
            facts.channel is not None and facts.channel not in settings.conversations.channels
        ):
            return f"{facts.channel.value} messages do not count in this workflow"
        case ExitTrigger.LINK_CLICKED if settings.link_clicks.ignore_scanner_clicks:
            return _scanner(signal, settings, sent_at)
        case ExitTrigger.DEAL_STAGE_ENTERED if facts.deal_stage not in settings.deal_stages:
            return f"stage {facts.deal_stage} is not one of the workflow's stages"
    return None


def _scanner(signal: Signal, settings: WorkflowSettings, sent_at: datetime | None) -> str | None:
    agent = (signal.facts.user_agent or "").lower()
    if any(name in agent for name in LINK_SCANNER_AGENTS):
        return f"clicked by a link scanner ({signal.facts.user_agent})"
    window = settings.link_clicks.scanner_window_s
    if sent_at is not None and window:
        after = (signal.occurred_at - sent_at).total_seconds()
        if after < window:
            return (
                f"clicked {after:.1f} s after the email was sent: a security gateway scanning "
                f"its links (window {window} s)"
            )
    return None
