"""trigger-evaluator handlers on the fake store: CRM record data: deal stages, a deal
opening at a company, company-wide replies across channels (by the CRM organization
first), fields set or updated by snapshots.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

from typing import Any

import pytest

from services.trigger_evaluator.handlers import TriggerHandlers
from shared.contracts import RecordType
from shared.contracts.commands import Exit, ExitReason
from shared.contracts.inbound import (
    Channel,
    ConversationMessagePayload,
    ConversationMessageReceived,
    DealStatus,
    RecordUpserted,
    RecordUpsertedPayload,
)
from shared.contracts.trigger_settings import FieldCondition, FieldOperator, FieldRule
from shared.contracts.workflow import ExitTrigger
from tests.support.builders.crm_records import contact, deal, organization, stage_changed, upserted
from tests.support.builders.enrollment_events import T0, enrolled
from tests.support.builders.inbound_events import inbound, reply
from tests.support.builders.trigger_projection import workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore
from tests.support.harness import Harness

pytestmark = pytest.mark.handler

TriggerEvaluator = Harness[FakeTriggerEvaluatorStore]
ACME = organization("o-acme")
OPEN, WON, LOST = DealStatus.OPEN, DealStatus.WON, DealStatus.LOST


@pytest.fixture
def h() -> TriggerEvaluator:
    return Harness(TriggerHandlers().handlers(), FakeTriggerEvaluatorStore, now=T0)


def exited(outcome: Any) -> list[tuple[str, ExitReason]]:
    return sorted((c.payload.record.id, c.payload.reason) for c in outcome.of_type(Exit))


def deal_enrolled(record_id: str = "d-1", workflow_id: str = "deals") -> Any:
    return enrolled(record_id, email="", record_type=RecordType.DEAL, workflow_id=workflow_id)


@pytest.mark.parametrize(
    ("triggers", "stages", "change", "expected"),
    [
        ({ExitTrigger.DEAL_WON}, (), ("closedwon", WON, ("demo", OPEN)), ExitReason.DEAL_WON),
        ({ExitTrigger.DEAL_WON}, (), ("closedlost", LOST, ("demo", OPEN)), None),
        ({ExitTrigger.DEAL_LOST}, (), ("closedlost", LOST, ("demo", OPEN)), ExitReason.DEAL_LOST),
        ({ExitTrigger.DEAL_OPENED}, (), ("qualified", OPEN, None), ExitReason.DEAL_OPENED),
        ({ExitTrigger.DEAL_OPENED}, (), ("qualified", OPEN, ("lead", OPEN)), None),
        (
            {ExitTrigger.DEAL_STAGE_ENTERED},
            ("contract",),
            ("contract", OPEN, ("demo", OPEN)),
            ExitReason.DEAL_STAGE_ENTERED,
        ),
        ({ExitTrigger.DEAL_STAGE_ENTERED}, ("contract",), ("demo", OPEN, ("lead", OPEN)), None),
        (
            # A deal that opens straight into a chosen stage fires the stage trigger too.
            {ExitTrigger.DEAL_STAGE_ENTERED},
            ("contract",),
            ("contract", OPEN, None),
            ExitReason.DEAL_STAGE_ENTERED,
        ),
        ({ExitTrigger.FIELD_CHANGED}, (), ("closedwon", WON, ("demo", OPEN)), None),
    ],
)
async def test_deal_stage_triggers_of_a_deal_workflow(
    h: TriggerEvaluator,
    triggers: set[ExitTrigger],
    stages: tuple[str, ...],
    change: tuple[str, DealStatus, tuple[str, DealStatus] | None],
    expected: ExitReason | None,
) -> None:
    workflow = workflow_applied(
        workflow_id="deals",
        record_type=RecordType.DEAL,
        triggers=frozenset(triggers),
        deal_stages=stages,
    )
    await h.given(workflow, deal_enrolled())
    stage, status, previous = change

    outcome = await h.when(stage_changed(deal("d-1"), stage, status, previous=previous))

    assert exited(outcome) == ([("d-1", expected)] if expected else [])


async def test_a_deal_opening_at_a_company_exits_its_contacts_in_a_second(
    h: TriggerEvaluator,
) -> None:
    ann, bob = enrolled("c-1", email="ann@acme.com"), enrolled("c-2", email="bob@acme.com")
    outsider = enrolled("c-3", email="cy@acme.com")  # same domain, not of the organization
    await h.given(
        workflow_applied(exit_company_on_deal_opened=True),
        ann,
        bob,
        outsider,
        upserted(ACME, contact("c-1"), contact("c-2"), deal("d-1")),
    )

    outcome = await h.when(stage_changed(deal("d-1"), "qualified", OPEN))

    assert exited(outcome) == [
        ("c-1", ExitReason.DEAL_OPENED_AT_COMPANY),
        ("c-2", ExitReason.DEAL_OPENED_AT_COMPANY),
    ]


async def test_a_deal_opening_exits_nobody_without_the_setting_or_when_it_only_moved(
    h: TriggerEvaluator,
) -> None:
    await h.given(
        workflow_applied(),
        enrolled("c-1", email="ann@acme.com"),
        upserted(ACME, contact("c-1"), deal("d-1"), deal("d-2")),
        workflow_applied(workflow_id="other", exit_company_on_deal_opened=True),
        enrolled("c-1", email="ann@acme.com", workflow_id="other"),
    )

    opened = await h.when(stage_changed(deal("d-1"), "qualified", OPEN))
    moved = await h.when(stage_changed(deal("d-2"), "demo", OPEN, previous=("lead", OPEN)))

    assert [c.payload.workflow_id for c in opened.of_type(Exit)] == ["other"]
    assert exited(moved) == []


async def test_a_reply_exits_the_repliers_organization_not_their_email_domain(
    h: TriggerEvaluator,
) -> None:
    await h.given(
        workflow_applied(unenroll_company_on_reply=True),
        enrolled("c-1", email="ann@acme.com"),
        enrolled("c-2", email="bob@gmail.com", company_domain="gmail.com"),  # Acme's, by CRM
        enrolled("c-3", email="cy@acme.com"),  # acme.com, but not of the organization
        upserted(ACME, contact("c-1"), contact("c-2")),
    )

    outcome = await h.when(reply(from_address="ann@acme.com"))

    assert exited(outcome) == [("c-1", ExitReason.REPLIED), ("c-2", ExitReason.COMPANY_REPLIED)]


async def test_a_reply_from_a_free_mail_address_unenrolls_no_company(h: TriggerEvaluator) -> None:
    # yahoo.co.uk comes from the maintained free-mail list, not from Offramp's own few.
    await h.given(
        workflow_applied(unenroll_company_on_reply=True),
        enrolled("c-1", email="ann@yahoo.co.uk", company_domain="yahoo.co.uk"),
        enrolled("c-2", email="bob@yahoo.co.uk", company_domain="yahoo.co.uk"),
    )

    outcome = await h.when(reply(from_address="ann@yahoo.co.uk"))

    assert exited(outcome) == [("c-1", ExitReason.REPLIED)]


@pytest.mark.parametrize("channel", list(Channel))
async def test_an_incoming_message_on_any_channel_unenrolls_the_whole_company(
    h: TriggerEvaluator, channel: Channel
) -> None:
    await h.given(
        workflow_applied(
            triggers=frozenset({ExitTrigger.MESSAGE_RECEIVED}), unenroll_company_on_reply=True
        ),
        enrolled("c-1", email="ann@acme.com"),
        enrolled("c-2", email="bob@acme.com"),
    )
    message = ConversationMessagePayload(
        record=contact("c-1"), channel=channel, conversation_id="k"
    )

    outcome = await h.when(inbound(ConversationMessageReceived, message))

    assert exited(outcome) == [
        ("c-1", ExitReason.MESSAGE_RECEIVED),
        ("c-2", ExitReason.COMPANY_REPLIED),
    ]


def crm_snapshot(record_id: str, **fields: Any) -> Any:
    return inbound(
        RecordUpserted,
        RecordUpsertedPayload.model_validate({"record": contact(record_id), "fields": fields}),
    )


async def test_a_crm_snapshot_that_changes_a_ruled_field_exits_and_a_baseline_does_not(
    h: TriggerEvaluator,
) -> None:
    customer = FieldRule(
        field="stage", conditions=(FieldCondition(operator=FieldOperator.IS, value="customer"),)
    )
    await h.given(
        workflow_applied(triggers=frozenset({ExitTrigger.FIELD_CHANGED}), field_rules=(customer,)),
        enrolled("c-1", email="ann@acme.com"),
        enrolled("c-2", email="bob@acme.com"),
    )

    baseline = await h.when(
        crm_snapshot("c-1", stage="customer"), crm_snapshot("c-2", stage="lead")
    )
    same = await h.when(crm_snapshot("c-1", stage="customer", note="x"))
    changed = await h.when(crm_snapshot("c-2", stage="customer"))

    assert exited(baseline) == []  # a first snapshot is where the record starts from
    assert exited(same) == []  # note changed, no rule about it
    assert exited(changed) == [("c-2", ExitReason.FIELD_CHANGED)]
