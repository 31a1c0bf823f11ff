"""Exclusions in the enrollment handlers: rules block enrolls (manual ones too) and
*remove* rules take enrolled records out when a record or a rule changes.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import pytest

from services.enrollment.domain import Status
from shared.contracts import RecordRef, RecordType
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import (
    EnrollmentEnrolled,
    EnrollmentExited,
    EnrollmentRejected,
)
from shared.contracts.exclusions import (
    ExclusionRejected,
    ExclusionRuleVersioned,
    RuleAction,
    RuleChange,
    RuleLevel,
    RuleScope,
)
from tests.support.builders.enrollment_commands import ALICE, BOB, apply_cmd, definition
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT
from tests.support.builders.enrollment_setup import EnrollmentHarness, enrollment_harness, only
from tests.support.builders.exclusion_commands import (
    ACME_ORG,
    associated,
    delete_rule,
    disable_rule,
    enroll_from,
    field_changed,
    hard_bounced,
    put_rule,
    put_ruleset,
    unsubscribed,
    upserted,
)
from tests.support.builders.exclusions import cond

pytestmark = pytest.mark.handler

CUSTOMER = cond("lifecyclestage", "is", "customer")


@pytest.fixture
async def h() -> EnrollmentHarness:
    harness = enrollment_harness()
    await harness.given(apply_cmd(definition()))
    return harness


async def enrolled(h: EnrollmentHarness, record: RecordRef = ALICE) -> EnrollmentEnrolled:
    return only(await h.when(enroll_from(record)), EnrollmentEnrolled)


async def test_an_enroll_is_rejected_with_every_rule_that_matches(h: EnrollmentHarness) -> None:
    await h.given(
        upserted(ALICE, fields={"lifecyclestage": "customer", "employees": 12}),
        put_rule("r-stage", CUSTOMER),
        put_rule(
            "r-small",
            cond("employees", "less", 50),
            level=RuleLevel.WORKFLOW,
            workflow_id="onboarding",
        ),
        put_rule("r-other", cond("employees", "greater", 50)),
    )

    rejected = only(await h.when(enroll_from(ALICE)), EnrollmentRejected)

    found = [(r.code, r.rule_id) for r in rejected.payload.rejections]
    assert found == [("excluded", "r-small"), ("excluded", "r-stage")]
    small = rejected.payload.rejections[0].exclusion
    assert small is not None
    assert (small.version, small.level, small.condition) == (1, "workflow", "employees less 50")
    assert small.values_seen == {"employees": 12}
    assert h.store.enrollments == {}


async def test_manual_enrollment_obeys_the_rules_with_no_override(h: EnrollmentHarness) -> None:
    await h.given(put_rule("r-1", cond("email", "is", "c-1@acme.com")))

    outcome = await h.when(enroll_from(ALICE), enroll_from(BOB))

    assert only(outcome, EnrollmentRejected).payload.record == ALICE
    assert only(outcome, EnrollmentEnrolled).payload.record == BOB


async def test_a_hard_bounced_or_unsubscribed_address_cannot_be_enrolled(
    h: EnrollmentHarness,
) -> None:
    await h.given(hard_bounced("c-1@acme.com"), unsubscribed("c-2@acme.com"))

    outcome = await h.when(enroll_from(ALICE), enroll_from(BOB))

    rules = [r.rule_id for m in outcome.of_type(EnrollmentRejected) for r in m.payload.rejections]
    assert rules == ["builtin.hard_bounced", "builtin.unsubscribed"]


async def test_a_contact_whose_address_changed_since_the_bounce_can_be_enrolled(
    h: EnrollmentHarness,
) -> None:
    await h.given(hard_bounced("old@acme.com"), upserted(ALICE, email="new@acme.com"))

    outcome = await h.when(enroll_from(ALICE, email="old@acme.com"))

    assert only(outcome, EnrollmentEnrolled).payload.record == ALICE


async def test_a_disabled_built_in_rule_lets_a_bounced_contact_in(h: EnrollmentHarness) -> None:
    await h.given(hard_bounced("c-1@acme.com"), disable_rule("builtin.hard_bounced"))

    assert only(await h.when(enroll_from(ALICE)), EnrollmentEnrolled)


async def test_a_global_rule_turned_off_in_the_ruleset_and_globally_lets_records_in(
    h: EnrollmentHarness,
) -> None:
    await h.given(
        upserted(ALICE, fields={"lifecyclestage": "customer"}),
        upserted(BOB, fields={"lifecyclestage": "customer"}),
        put_rule("r-1", CUSTOMER, enforce_everywhere=False),
        put_ruleset("onboarding", {"r-1": False}),
        put_rule("r-2", CUSTOMER, workflow_id=None),
    )
    outcome = await h.when(enroll_from(ALICE))
    assert [r.rule_id for r in only(outcome, EnrollmentRejected).payload.rejections] == ["r-2"]

    await h.given(delete_rule("r-2"))
    assert only(await h.when(enroll_from(BOB)), EnrollmentEnrolled)


async def test_a_record_that_starts_to_match_a_remove_rule_exits_naming_the_rule(
    h: EnrollmentHarness,
) -> None:
    enrollment = await enrolled(h)
    await h.given(put_rule("r-1", CUSTOMER, action=RuleAction.REMOVE))
    change = upserted(ALICE, fields={"lifecyclestage": "customer"})

    exited = only(await h.when(change), EnrollmentExited)

    assert exited.payload.enrollment_id == enrollment.payload.enrollment_id
    assert (exited.payload.reason, exited.payload.source) == (
        ExitReason.EXCLUSION_MATCHED,
        ExitSource.EXCLUSION,
    )
    assert exited.payload.exclusion is not None
    assert (exited.payload.exclusion.rule_id, exited.payload.exclusion.version) == ("r-1", 1)
    assert exited.payload.triggering_event is not None
    assert exited.payload.triggering_event.message_id == change.message_id
    assert exited.causation_id == change.message_id
    saved = h.store.enrollments[(ACCOUNT, enrollment.payload.enrollment_id)]
    assert saved.status is Status.EXITED


async def test_a_block_rule_leaves_enrolled_records_in(h: EnrollmentHarness) -> None:
    await enrolled(h)
    await h.given(put_rule("r-1", CUSTOMER))

    outcome = await h.when(upserted(ALICE, fields={"lifecyclestage": "customer"}))

    assert outcome.published == []


async def test_a_field_change_for_an_unknown_record_creates_it_and_can_exit(
    h: EnrollmentHarness,
) -> None:
    await enrolled(h)
    await h.given(put_rule("r-1", CUSTOMER, action=RuleAction.REMOVE))

    outcome = await h.when(field_changed(ALICE, "lifecyclestage", "customer"))

    assert only(outcome, EnrollmentExited).payload.reason is ExitReason.EXCLUSION_MATCHED
    assert h.store.records[(ACCOUNT, ALICE)].fields == {"lifecyclestage": "customer"}


async def test_a_company_rule_exits_every_contact_of_the_company(h: EnrollmentHarness) -> None:
    carol = RecordRef(type=RecordType.CONTACT, id="c-3")
    await h.given(
        upserted(ALICE, email="alice@acme.com", domains=("www.Acme.com",)),
        upserted(BOB, email="bob@gmail.com", associations=(ACME_ORG,)),
        upserted(carol, email="carol@globex.com"),
    )
    for record in (ALICE, BOB, carol):
        await enrolled(h, record)
    await h.given(
        put_rule(
            "r-co",
            cond("tier", "is", "enterprise"),
            scope=RuleScope.COMPANY,
            action=RuleAction.REMOVE,
        )
    )

    # A snapshot: the organization lists its contacts too (Bob is linked, Alice shares
    # the domain, Carol is of another company).
    outcome = await h.when(
        upserted(
            ACME_ORG, fields={"tier": "enterprise"}, domains=("acme.com",), associations=(BOB,)
        )
    )

    assert sorted(m.payload.record.id for m in outcome.of_type(EnrollmentExited)) == [
        "c-1",
        "c-2",
    ]


async def test_an_association_to_a_matching_company_exits_the_contact(
    h: EnrollmentHarness,
) -> None:
    await h.given(upserted(ACME_ORG, fields={"tier": "enterprise"}))
    await enrolled(h)
    await h.given(
        put_rule("r-co", cond("company.tier", "is", "enterprise"), action=RuleAction.REMOVE)
    )

    outcome = await h.when(associated(ALICE, ACME_ORG))

    assert only(outcome, EnrollmentExited).payload.record == ALICE


async def test_a_rule_created_to_match_enrolled_records_exits_them_at_once(
    h: EnrollmentHarness,
) -> None:
    await h.given(
        upserted(ALICE, fields={"lifecyclestage": "customer"}),
        upserted(BOB, fields={"lifecyclestage": "lead"}),
    )
    await enrolled(h, ALICE)
    await enrolled(h, BOB)
    command = put_rule("r-1", CUSTOMER, action=RuleAction.REMOVE)

    outcome = await h.when(command)

    versioned = only(outcome, ExclusionRuleVersioned)
    assert (versioned.payload.version, versioned.payload.change) == (1, RuleChange.CREATED)
    exited = only(outcome, EnrollmentExited)
    assert exited.payload.record == ALICE
    assert exited.causation_id == command.message_id


async def test_changing_a_rule_publishes_its_next_version_and_disabling_exits_nothing(
    h: EnrollmentHarness,
) -> None:
    await h.given(upserted(ALICE, fields={"lifecyclestage": "customer"}), put_rule("r-1"))
    await enrolled(h, BOB)

    changed = await h.when(put_rule("r-1", CUSTOMER, action=RuleAction.REMOVE))
    disabled = await h.when(disable_rule("r-1"))
    again = await h.when(disable_rule("r-1"))

    assert only(changed, ExclusionRuleVersioned).payload.version == 2
    assert only(disabled, ExclusionRuleVersioned).payload.change is RuleChange.DISABLED
    assert only(disabled, ExclusionRuleVersioned).payload.version == 3
    assert again.published == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (put_rule("r-1", cond("x", "resembles", 1)), "unknown_operator"),
        (put_rule("r-1", cond("x", "greater", "soon")), "invalid_value"),
        (put_rule("r-1", level=RuleLevel.WORKFLOW, workflow_id="nowhere"), "unknown_workflow"),
        (put_rule("r-1", cond("email", "in_list", "no-list")), "unknown_list"),
        (disable_rule("r-none"), "unknown_rule"),
    ],
)
async def test_a_bad_rule_command_is_answered_and_changes_nothing(
    h: EnrollmentHarness, command: object, code: str
) -> None:
    outcome = await h.when(command)  # type: ignore[arg-type]

    rejected = only(outcome, ExclusionRejected)
    assert [p.code for p in rejected.payload.problems] == [code]
    assert rejected.causation_id == command.message_id  # type: ignore[attr-defined]
    assert h.store.rule_heads == {}


async def test_a_rule_for_another_account_s_workflow_is_an_unknown_workflow(
    h: EnrollmentHarness,
) -> None:
    command = put_rule(
        "r-1", level=RuleLevel.WORKFLOW, workflow_id="onboarding", account_id=OTHER_ACCOUNT
    )
    rejected = only(await h.when(command), ExclusionRejected)
    assert [p.code for p in rejected.payload.problems] == ["unknown_workflow"]


async def test_accounts_with_the_same_domains_never_exclude_each_other(
    h: EnrollmentHarness,
) -> None:
    await h.given(
        apply_cmd(definition(), OTHER_ACCOUNT),
        put_rule(
            "r-1",
            cond("domain", "is", "acme.com"),
            action=RuleAction.REMOVE,
            account_id=OTHER_ACCOUNT,
        ),
    )
    await enrolled(h)

    outcome = await h.when(
        upserted(ALICE, domains=("acme.com",)),
        enroll_from(BOB),
        enroll_from(BOB, account_id=OTHER_ACCOUNT),
    )

    assert [m.account_id for m in outcome.of_type(EnrollmentEnrolled)] == [ACCOUNT]
    assert [m.account_id for m in outcome.of_type(EnrollmentRejected)] == [OTHER_ACCOUNT]
    assert outcome.of_type(EnrollmentExited) == []


async def test_audience_rules_apply_to_enrolls_from_their_audience(h: EnrollmentHarness) -> None:
    await h.given(
        put_rule(
            "r-aud",
            cond("email", "contains", "@acme.com"),
            level=RuleLevel.AUDIENCE,
            audience_id="webinar",
        )
    )

    outcome = await h.when(
        enroll_from(ALICE, audience_id="webinar"), enroll_from(BOB, audience_id="trade-show")
    )

    assert only(outcome, EnrollmentRejected).payload.record == ALICE
    assert only(outcome, EnrollmentEnrolled).payload.record == BOB


async def test_a_ruleset_turning_a_remove_rule_back_on_exits_its_matches(
    h: EnrollmentHarness,
) -> None:
    await h.given(
        put_rule("r-1", CUSTOMER, action=RuleAction.REMOVE, enforce_everywhere=False),
        put_ruleset("onboarding", {"r-1": False}),
        upserted(ALICE, fields={"lifecyclestage": "customer"}),
    )
    await enrolled(h)

    outcome = await h.when(put_ruleset("onboarding", {"r-1": True}))

    assert only(outcome, EnrollmentExited).payload.record == ALICE
