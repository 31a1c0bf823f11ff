"""Issue 10 end to end, on the real broker and database with the services as processes:
a workflow's trigger rules decide which events exit, within a second of the event."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from shared.contracts import Actor, ActorKind, Message, RecordRef, RecordType, topics
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
)
from shared.contracts.inbound import (
    DealStageChanged,
    DealStageChangedPayload,
    DealStatus,
    PageVisited,
    PageVisitedPayload,
    RecordUpserted,
    RecordUpsertedPayload,
)
from shared.contracts.trigger_settings import UrlMatch, UrlRule
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from tests.conftest import SessionEnv
from tests.e2e.conftest import System
from tests.support.kafka import TopicClient, of_type
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

USER = Actor(kind=ActorKind.USER, id="user-1")


def apply(account: str, workflow: WorkflowDefinition) -> ApplyWorkflow:
    return ApplyWorkflow.create(
        account_id=account, payload=ApplyWorkflowPayload(actor=USER, definition=workflow)
    )


def enroll(account: str, workflow_id: str, record: RecordRef, **contact: Any) -> Enroll:
    return Enroll.create(
        account_id=account,
        payload=EnrollPayload(
            workflow_id=workflow_id, record=record, contact=ContactDetails(**contact), actor=USER
        ),
    )


async def projected_enrollments(env: SessionEnv, account: str) -> int:
    conn = await asyncpg.connect(env.database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM trigger_evaluator.enrollments WHERE account_id = $1", account
            )
        )
    finally:
        await conn.close()


async def links_of(test_env: SessionEnv, account: str) -> int:
    conn = await asyncpg.connect(test_env.database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM trigger_evaluator.record_links WHERE account_id = $1", account
        )
        return int(count)
    finally:
        await conn.close()


def mine(documents: list[dict[str, Any]], kind: str, account: str) -> list[dict[str, Any]]:
    return [d for d in of_type(documents, kind) if d["account_id"] == account]


async def test_a_visit_to_a_page_no_rule_matches_does_not_exit_and_a_matching_one_does(
    system: System,
) -> None:
    test_env, _, services = system
    account = "acc-e2e-pages"
    record = RecordRef(type=RecordType.CONTACT, id="c-visitor")
    workflow = WorkflowDefinition(
        workflow_id="wf-pages",
        name="Pages",
        record_type=RecordType.CONTACT,
        steps=(Step(step_id="s0", subject="Hi", body="Hi", delay_seconds=3600),),
        settings=WorkflowSettings(
            exit_triggers=frozenset({ExitTrigger.PAGE_VISITED}),
            page_rules=(UrlRule(match=UrlMatch.PREFIX, pattern="https://www.acme.com/pricing"),),
        ),
    )

    def visit(url: str) -> Message:
        return PageVisited.create(
            account_id=account, payload=PageVisitedPayload(record=record, url=url)
        )

    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        await kafka.publish(apply(account, workflow))
        await kafka.publish(enroll(account, workflow.workflow_id, record, email="v@example.com"))
        await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: len(mine(docs, "enrollment.enrolled", account)) == 1,
            what="the visitor enrolled",
        )
        # The same record's key: the non-matching visit is read (and decided) first.
        elsewhere, pricing = (
            visit("https://acme.com/blog/pricing"),
            visit("http://acme.com/Pricing/?x=1"),
        )
        await kafka.publish_many([elsewhere, pricing])

        events = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: len(mine(docs, "enrollment.exited", account)) >= 1,
            what="the exit of the matching visit",
        )
        commands = await kafka.read_all(topics.COMMANDS)
    [exited] = mine(events, "enrollment.exited", account)
    assert exited["payload"]["reason"] == "page_visited"
    assert exited["payload"]["triggering_event"]["message_id"] == str(pricing.message_id)
    exits = mine(commands, "enrollment.exit", account)
    assert [c["causation_id"] for c in exits] == [str(pricing.message_id)]
    assert all(s.process.poll() is None for s in services), "a service crashed"


async def test_a_deal_opening_at_a_company_exits_every_enrollment_of_its_contacts(
    system: System,
) -> None:
    test_env, _, services = system
    account = "acc-e2e-deals"
    company = RecordRef(type=RecordType.ORGANIZATION, id="o-acme")
    the_deal = RecordRef(type=RecordType.DEAL, id="d-1")
    people = [RecordRef(type=RecordType.CONTACT, id=f"c-{i}") for i in range(3)]
    outsider = RecordRef(type=RecordType.CONTACT, id="c-out")  # same domain, other company
    workflow = WorkflowDefinition(
        workflow_id="wf-prospects",
        name="Prospects",
        record_type=RecordType.CONTACT,
        steps=(Step(step_id="s0", subject="Hi", body="Hi", delay_seconds=3600),),
        settings=WorkflowSettings(exit_company_on_deal_opened=True),
    )
    async with TopicClient(test_env.kafka_bootstrap_servers, test_env.topic_namespace) as kafka:
        await kafka.publish(apply(account, workflow))
        for person in (*people, outsider):
            email = f"{person.id}@acme.com"
            await kafka.publish(
                enroll(
                    account, workflow.workflow_id, person, email=email, company_domain="acme.com"
                )
            )
        await kafka.publish(
            RecordUpserted.create(
                account_id=account,
                payload=RecordUpsertedPayload(record=company, associations=(*people, the_deal)),
            )
        )
        await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: len(mine(docs, "enrollment.enrolled", account)) == 4,
            what="four contacts enrolled",
        )
        # The organization's record is on another key than the deal's: wait until
        # trigger-evaluator has projected its associations (both ways: 2 rows each).
        await eventually(
            lambda: links_of(test_env, account),
            until=lambda count: count == 8,
            what="the organization's associations projected",
        )
        # The company's contacts are found through trigger-evaluator's projection of their
        # enrollments: a deal event read before they are projected is not re-driven by
        # them (see the issue-10 note), so this test starts from a projected state.
        await eventually(
            lambda: projected_enrollments(test_env, account),
            until=lambda count: count == 4,
            what="the four enrollments projected in trigger-evaluator",
        )
        opened = DealStageChanged.create(
            account_id=account,
            payload=DealStageChangedPayload(
                record=the_deal, stage="qualified", status=DealStatus.OPEN
            ),
        )
        await kafka.publish(opened)

        events = await eventually(
            lambda: kafka.read_all(topics.ENROLLMENT_EVENTS),
            until=lambda docs: len(mine(docs, "enrollment.exited", account)) >= 3,
            what="the company's three contacts exited",
        )
    exits = mine(events, "enrollment.exited", account)
    assert sorted(e["payload"]["record"]["id"] for e in exits) == ["c-0", "c-1", "c-2"]
    assert {e["payload"]["reason"] for e in exits} == {"deal_opened_at_company"}
    assert {e["payload"]["triggering_event"]["message_id"] for e in exits} == {
        str(opened.message_id)
    }
    assert all(s.process.poll() is None for s in services), "a service crashed"
