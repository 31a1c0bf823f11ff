"""Exclusion rules, decided purely: every operator, AND/OR groups, exceptions, company
scope, built-in rules, levels, toggles and precedence, and validation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.enrollment.exclusions import (
    Context,
    ListHits,
    Subject,
    Target,
    applies,
    matches,
    screen,
    validate_rule,
    with_builtins,
)
from shared.contracts.exclusions import ListKind, RuleAction, RuleLevel, RuleScope
from shared.domains import list_value, normalize_domain
from tests.support.builders.exclusions import (
    ACCOUNT,
    ANN,
    NOW,
    company,
    cond,
    contact,
    rule,
    rule_def,
)

pytestmark = pytest.mark.unit

CTX = Context(now=NOW)
IN_WF = Target(workflow_id="wf-1")


def hit(subject: Subject, *conditions: Any, ctx: Context = CTX, **overrides: Any) -> bool:
    return matches(rule("r-1", *conditions, **overrides), subject, ctx) is not None


ANN_FIELDS = {
    "lifecyclestage": "customer",
    "tags": ("vip", "Partner"),
    "employees": 120,
    "score": 7.5,
    "last_activity": (NOW - timedelta(days=3)).isoformat(),
    "signed_up": "2025-01-01",
    "empty": "",
    "opted_in": True,
}
ANN_SUBJECT = contact(fields=ANN_FIELDS, aliases=("ann.b@acme.io",), company_name="Acme Inc")


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("lifecyclestage", "is", "customer", True),
        ("lifecyclestage", "is", "Customer", True),
        ("lifecyclestage", "is", "lead", False),
        ("lifecyclestage", "is_not", "lead", True),
        ("lifecyclestage", "is_not", "customer", False),
        ("tags", "is", "partner", True),
        ("tags", "is_not", "vip", False),
        ("lifecyclestage", "contains", "tom", True),
        ("tags", "contains", "art", True),
        ("email", "contains", "acme.io", True),
        ("lifecyclestage", "in", ("lead", "customer"), True),
        ("lifecyclestage", "not_in", ("lead", "customer"), False),
        ("tags", "in", ("other", "VIP"), True),
        ("tags", "not_in", ("other",), True),
        ("employees", "greater", 100, True),
        ("employees", "greater", 120, False),
        ("employees", "less", 121, True),
        ("score", "less", 7, False),
        ("signed_up", "less", "2025-06-01", True),
        ("signed_up", "greater", "2025-06-01T00:00:00+00:00", False),
        ("lifecyclestage", "greater", 3, False),
        ("employees", "set", None, True),
        ("empty", "set", None, False),
        ("missing", "set", None, False),
        ("missing", "not_set", None, True),
        ("employees", "not_set", None, False),
        ("last_activity", "within_days", 7, True),
        ("last_activity", "within_days", 2, False),
        ("last_activity", "older_than_days", 2, True),
        ("last_activity", "older_than_days", 7, False),
        ("signed_up", "older_than_days", 30, True),
        ("lifecyclestage", "within_days", 30, False),
        ("opted_in", "is", True, True),
        ("opted_in", "is", 1, False),
        ("email", "is", "ANN.B@acme.io", True),
        ("domain", "is", "WWW.Acme.com.", True),
        ("company_name", "is", "acme inc", True),
        ("record_id", "is", "c-ann", True),
        ("missing", "is_not", "x", True),
        ("missing", "not_in", ("x",), True),
    ],
)
def test_each_operator_reads_the_field_by_internal_name(
    field: str, operator: str, value: Any, expected: bool
) -> None:
    assert hit(ANN_SUBJECT, cond(field, operator, value)) is expected


def test_lists_match_normalised_emails_domains_and_company_names() -> None:
    ctx = Context(
        now=NOW,
        lists={
            "emails": ListHits(ListKind.EMAIL, frozenset({"ann.b@acme.io"})),
            "domains": ListHits(ListKind.DOMAIN, frozenset({"acme.com"})),
            "names": ListHits(ListKind.COMPANY_NAME, frozenset({"globex"})),
        },
    )
    assert hit(ANN_SUBJECT, cond("email", "in_list", "emails"), ctx=ctx)
    assert hit(ANN_SUBJECT, cond("domain", "in_list", "domains"), ctx=ctx)
    assert not hit(ANN_SUBJECT, cond("company_name", "in_list", "names"), ctx=ctx)
    assert hit(ANN_SUBJECT, cond("company_name", "not_in_list", "names"), ctx=ctx)
    assert list_value(ListKind.COMPANY_NAME, "  Globex   Corp ") == "globex corp"
    assert list_value(ListKind.EMAIL, "Ann@WWW.Bücher.de") == "ann@xn--bcher-kva.de"
    assert list_value(ListKind.EMAIL, "no-at-sign") is None


def test_groups_combine_with_and_or_and_exceptions_are_and_conditions() -> None:
    stage = cond("lifecyclestage", "is", "customer")
    lead = cond("lifecyclestage", "is", "lead")
    assert not hit(ANN_SUBJECT, stage, lead)
    assert hit(ANN_SUBJECT, stage, lead, match="any")
    assert not hit(ANN_SUBJECT, stage, exceptions=(cond("domain", "is_not", "acme.com"),))
    assert hit(ANN_SUBJECT, stage, exceptions=(cond("domain", "is_not", "example.com"),))
    assert not hit(ANN_SUBJECT, stage, exceptions=(cond("email", "is_not", "ann@acme.com"),))


def test_a_hit_names_the_rule_version_level_condition_and_values_seen() -> None:
    found = matches(
        rule("r-9", cond("tags", "is", "vip"), cond("employees", "greater", 10), version=4),
        ANN_SUBJECT,
        CTX,
    )
    assert found is not None
    assert (found.rule_id, found.version, found.level) == ("r-9", 4, "global")
    assert found.condition == "tags is 'vip' AND employees greater 10"
    assert found.values_seen == {"tags": ("vip", "Partner"), "employees": 120}


def test_company_rules_read_the_company_and_match_every_contact_of_it() -> None:
    acme = company(fields={"tier": "enterprise"})
    company_rule = rule("r-c", cond("tier", "is", "enterprise"), scope=RuleScope.COMPANY)
    record_rule = rule("r-r", cond("tier", "is", "enterprise"))
    with_company = contact(companies=(acme,))
    alone = contact(companies=())

    assert matches(company_rule, with_company, CTX) is not None
    assert matches(record_rule, with_company, CTX) is None
    assert matches(rule("r-p", cond("company.tier", "is", "enterprise")), with_company, CTX)
    assert matches(company_rule, alone, CTX) is None
    assert matches(rule("r-d", cond("domain", "is", "ACME.com")), alone, CTX) is not None


def test_a_contact_s_domain_comes_from_its_company_before_its_address() -> None:
    subject = contact(email="ann@gmail.com", companies=(company(domains=("www.acme.com",)),))
    assert subject.company_domains == ("www.acme.com",)
    assert contact(email="ann@Mail.Acme.com").company_domains == ("mail.acme.com",)


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("WWW.Acme.COM.", "acme.com"),
        ("https://www.acme.com/about", "acme.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("www.XN--BCHER-KVA.de", "xn--bcher-kva.de"),
        ("localhost", None),
        ("not a domain.com", None),
    ],
)
def test_domains_are_normalised_for_case_www_trailing_dot_and_punycode(
    text: str, normal: str | None
) -> None:
    assert normalize_domain(text) == normal


def test_built_in_rules_block_the_current_address_s_bounce_or_unsubscribe_only() -> None:
    rules = with_builtins(ACCOUNT, [])
    bounced = contact(hard_bounced=True)
    unsubscribed = contact(unsubscribed=True)

    assert [h.rule_id for h in screen(rules, bounced, IN_WF, CTX)] == ["builtin.hard_bounced"]
    assert [h.rule_id for h in screen(rules, unsubscribed, IN_WF, CTX)] == ["builtin.unsubscribed"]
    assert screen(rules, contact(), IN_WF, CTX) == []


def test_a_disabled_built_in_rule_stays_disabled() -> None:
    disabled = rule_def("builtin.hard_bounced", cond("hard_bounced", "is", True))
    stored = [rule("builtin.hard_bounced", cond("hard_bounced", "is", True), enabled=False)]
    rules = with_builtins(ACCOUNT, stored)
    assert len(rules) == 2
    assert screen(rules, contact(hard_bounced=True), IN_WF, CTX) == []
    assert disabled.rule_id == "builtin.hard_bounced"


def test_screen_lists_every_matching_rule_and_skips_disabled_and_deleted_ones() -> None:
    rules = [
        rule("r-b", cond("tags", "is", "vip")),
        rule("r-a", cond("employees", "greater", 1)),
        rule("r-off", enabled=False),
        rule("r-gone", deleted=True),
        rule("r-no", cond("employees", "less", 1)),
    ]
    assert [h.rule_id for h in screen(rules, ANN_SUBJECT, IN_WF, CTX)] == ["r-a", "r-b"]


def test_only_remove_rules_take_enrolled_records_out() -> None:
    rules = [rule("r-block"), rule("r-remove", action=RuleAction.REMOVE)]
    found = screen(rules, ANN_SUBJECT, IN_WF, CTX, removing_only=True)
    assert [h.rule_id for h in found] == ["r-remove"]


# --- levels, toggles and precedence -----------------------------------------------------


def test_workflow_rules_apply_to_their_workflow_and_audience_rules_to_their_audience() -> None:
    wf_rule = rule(level=RuleLevel.WORKFLOW, workflow_id="wf-1")
    aud_rule = rule(level=RuleLevel.AUDIENCE, audience_id="aud-1")

    assert applies(wf_rule, Target("wf-1"))
    assert not applies(wf_rule, Target("wf-2"))
    assert applies(aud_rule, Target("wf-1", audience_id="aud-1"))
    assert not applies(aud_rule, Target("wf-1", audience_id="aud-2"))
    assert not applies(aud_rule, Target("wf-1"))
    assert not applies(aud_rule, Target("wf-1", "aud-1", workflow_toggles={"r-1": False}))


@pytest.mark.parametrize(
    ("enforced", "workflow", "audience", "expected"),
    [
        (True, False, False, True),  # the global toggle on: rulesets cannot turn it off
        (False, None, None, True),  # nobody turned it off
        (False, False, None, False),  # both off: the record may be enrolled
        (False, None, False, False),
        (False, True, False, True),  # the workflow's setting wins over the audience's
        (False, False, True, False),
    ],
)
def test_a_global_rule_is_off_only_when_both_toggles_are(
    enforced: bool, workflow: bool | None, audience: bool | None, expected: bool
) -> None:
    global_rule = rule(enforce_everywhere=enforced)
    target = Target(
        "wf-1",
        audience_id="aud-1",
        workflow_toggles={} if workflow is None else {"r-1": workflow},
        audience_toggles={} if audience is None else {"r-1": audience},
    )
    assert applies(global_rule, target) is expected


# --- order independence ---------------------------------------------------------------

CONDITIONS = st.sampled_from(
    [
        cond("lifecyclestage", "is", "customer"),
        cond("tags", "contains", "vip"),
        cond("employees", "greater", 50),
        cond("employees", "less", 50),
        cond("domain", "is", "acme.com"),
        cond("missing", "set"),
        cond("last_activity", "within_days", 5),
    ]
)
RULES = st.lists(
    st.builds(
        lambda i, c, action, enforced, enabled: rule(
            f"r-{i}", c, action=action, enforce_everywhere=enforced, enabled=enabled
        ),
        st.integers(0, 30),
        CONDITIONS,
        st.sampled_from(list(RuleAction)),
        st.booleans(),
        st.booleans(),
    ),
    max_size=12,
    unique_by=lambda r: r.rule_id,
)


@given(rules=RULES, order=st.randoms(use_true_random=False))
def test_a_rule_set_s_decision_does_not_depend_on_the_order_rules_were_created(
    rules: list[Any], order: Any
) -> None:
    shuffled = list(rules)
    order.shuffle(shuffled)
    target = Target("wf-1", workflow_toggles={"r-1": False, "r-2": True})
    assert screen(rules, ANN_SUBJECT, target, CTX) == screen(shuffled, ANN_SUBJECT, target, CTX)
    assert screen(rules, ANN_SUBJECT, target, CTX, removing_only=True) == screen(
        shuffled, ANN_SUBJECT, target, CTX, removing_only=True
    )


@given(field=st.sampled_from([*sorted(ANN_FIELDS), "missing", "email"]), value=st.text(max_size=5))
def test_is_not_is_always_the_opposite_of_is(field: str, value: str) -> None:
    assert hit(ANN_SUBJECT, cond(field, "is", value)) is not hit(
        ANN_SUBJECT, cond(field, "is_not", value)
    )


# --- validation -----------------------------------------------------------------------


def codes(definition: Any, **kwargs: Any) -> list[str]:
    return [
        p.code
        for p in validate_rule(
            definition,
            workflow_known=kwargs.get("workflow_known", True),
            list_kinds=kwargs.get("list_kinds", {}),
        )
    ]


@pytest.mark.parametrize(
    ("condition", "code"),
    [
        (cond("x", "resembles", "y"), "unknown_operator"),
        (cond("x", "greater", "not-a-number"), "invalid_value"),
        (cond("x", "greater", True), "invalid_value"),
        (cond("x", "less", ("a",)), "invalid_value"),
        (cond("x", "in", ()), "invalid_value"),
        (cond("x", "in", "a"), "invalid_value"),
        (cond("x", "set", "a"), "invalid_value"),
        (cond("x", "within_days", 0), "invalid_value"),
        (cond("x", "older_than_days", 2.5), "invalid_value"),
        (cond("x", "is"), "invalid_value"),
        (cond("x", "contains", 3), "invalid_value"),
        (cond("email", "in_list", "nope"), "unknown_list"),
    ],
)
def test_a_rule_with_a_condition_that_cannot_be_checked_is_invalid(
    condition: Any, code: str
) -> None:
    assert codes(rule_def("r-1", condition)) == [code]


def test_every_problem_of_a_rule_is_listed() -> None:
    definition = rule_def(
        "builtin.mine",
        cond("x", "resembles", 1),
        level=RuleLevel.WORKFLOW,
        workflow_id="wf-x",
        exceptions=(cond("y", "greater", "soon"),),
    )
    assert codes(definition, workflow_known=False) == [
        "builtin_rule",
        "unknown_workflow",
        "unknown_operator",
        "invalid_value",
    ]


def test_levels_name_their_workflow_or_audience_only() -> None:
    assert codes(rule_def(level=RuleLevel.WORKFLOW)) == ["missing_workflow"]
    assert codes(rule_def(level=RuleLevel.AUDIENCE)) == ["missing_audience"]
    assert codes(rule_def(workflow_id="wf-1", audience_id="a")) == [
        "misplaced_workflow",
        "misplaced_audience",
    ]
    valid = rule_def(
        "r", cond("email", "in_list", "l-1"), level=RuleLevel.AUDIENCE, audience_id="a"
    )
    assert codes(valid, list_kinds={"l-1": ListKind.EMAIL}) == []
    assert ANN.id == "c-ann"
