"""Trigger rules are checked when the workflow is applied: a rule that could never fire or
could not be evaluated is refused with the reason, never silently ignored."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.trigger_evaluator.config import TriggerEvaluatorSettings
from services.trigger_evaluator.handlers import TriggerHandlers
from shared.contracts import RecordType
from shared.contracts.trigger_settings import (
    FieldCondition,
    FieldOperator,
    FieldRule,
    UrlMatch,
    UrlRule,
)
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings

pytestmark = pytest.mark.unit


def definition(record_type: RecordType = RecordType.CONTACT, **settings: Any) -> WorkflowDefinition:
    return WorkflowDefinition(
        workflow_id="wf",
        name="wf",
        record_type=record_type,
        steps=(Step(step_id="s", body="Hi"),),
        settings=WorkflowSettings(**settings),
    )


@pytest.mark.parametrize(
    ("match", "pattern", "why"),
    [
        (UrlMatch.REGEX, "acme.com/(pricing", "not a valid regex"),
        (UrlMatch.REGEX, "a" * 501, "at most 500 characters"),
        (UrlMatch.GLOB, "*", "would match every page"),
        (UrlMatch.PREFIX, "/", "would match every page"),
    ],
)
def test_a_url_rule_that_cannot_work_is_refused(match: UrlMatch, pattern: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        UrlRule(match=match, pattern=pattern)


@pytest.mark.parametrize(
    ("operator", "value", "why"),
    [
        (FieldOperator.SET, "x", "takes no value"),
        (FieldOperator.IN, "emea", "takes a list"),
        (FieldOperator.WITHIN_DAYS, "7", "takes a number of days"),
        (FieldOperator.IS, None, "needs a value"),
    ],
)
def test_a_field_condition_with_the_wrong_value_is_refused(
    operator: FieldOperator, value: Any, why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        FieldCondition(operator=operator, value=value)


def test_rules_of_a_trigger_that_is_off_are_refused() -> None:
    with pytest.raises(ValidationError, match="page_visited, which is not turned on"):
        definition(page_rules=(UrlRule(match=UrlMatch.EXACT, pattern="acme.com/pricing"),))
    with pytest.raises(ValidationError, match="field_changed, which is not turned on"):
        definition(field_rules=(FieldRule(field="phone"),))


def test_deal_stage_entered_needs_its_stages_and_deal_triggers_need_a_deal_workflow() -> None:
    with pytest.raises(ValidationError, match="needs the stages"):
        definition(RecordType.DEAL, exit_triggers=frozenset({ExitTrigger.DEAL_STAGE_ENTERED}))
    with pytest.raises(ValidationError, match="do not apply to contact workflows"):
        definition(exit_triggers=frozenset({ExitTrigger.DEAL_OPENED}))
    with pytest.raises(ValidationError, match="contact workflows only"):
        definition(RecordType.DEAL, exit_company_on_deal_opened=True)


def test_valid_rules_are_kept_as_applied() -> None:
    applied = definition(
        exit_triggers=frozenset({ExitTrigger.PAGE_VISITED, ExitTrigger.FIELD_CHANGED}),
        page_rules=(UrlRule(match=UrlMatch.REGEX, pattern=r"^acme\.com/(jobs|careers)"),),
        field_rules=(
            FieldRule(
                field="lifecyclestage",
                conditions=(FieldCondition(operator=FieldOperator.IS, value="customer"),),
            ),
        ),
    )

    again = WorkflowDefinition.model_validate_json(applied.model_dump_json())

    assert again == applied


def test_a_workflow_naming_itself_among_the_workflows_to_exit_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot exit records from itself"):
        definition(exits_workflows_on_enroll=("wf",))


def test_extra_free_mail_domains_are_added_to_the_maintained_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OFFRAMP_COMPANY_REPLY_EXTRA_IGNORED_DOMAINS", '["Mail.Example"]')

    handlers = TriggerHandlers.of(TriggerEvaluatorSettings())

    assert {
        "mail.example",
        "gmail.com",
        "yahoo.co.uk",
        "web.de",
    } <= handlers.ignored_company_domains
    assert "acme.com" not in handlers.ignored_company_domains
