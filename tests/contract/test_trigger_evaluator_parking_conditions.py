"""``TriggerEvaluatorStore.park``: an event that fires several triggers (a deal's stage
change) is kept where a workflow exits on any of them; the fake and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.trigger_evaluator.domain import Waiting, evaluate
from services.trigger_evaluator.parking import park
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.repository import PostgresTriggerEvaluatorStore
from services.trigger_evaluator.triggers import classify
from shared.contracts import RecordType
from shared.contracts.inbound import DealStatus
from shared.contracts.workflow import ExitTrigger
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.builders.crm_records import deal, stage_changed
from tests.support.builders.enrollment_events import ACCOUNT, OTHER_ACCOUNT, T0
from tests.support.builders.trigger_projection import workflow_applied
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "postgres"])
async def store(
    request: pytest.FixtureRequest, test_env: SessionEnv
) -> AsyncIterator[TriggerEvaluatorStore]:
    if request.param == "fake":
        yield FakeTriggerEvaluatorStore()
        return
    async with migrated_schema(test_env, "trigger_evaluator") as conn:
        yield PostgresTriggerEvaluatorStore(conn)


async def test_a_deal_won_waits_where_a_workflow_exits_on_its_stage_and_not_elsewhere(
    store: TriggerEvaluatorStore,
) -> None:
    await store.save_workflow_versions(
        [
            workflow_applied(
                record_type=RecordType.DEAL,
                triggers=frozenset({ExitTrigger.DEAL_STAGE_ENTERED}),
                deal_stages=("closedwon",),
            ),
            workflow_applied(account=OTHER_ACCOUNT, triggers=frozenset({ExitTrigger.REPLIED})),
        ]
    )
    parked = []
    for account in (ACCOUNT, OTHER_ACCOUNT):
        event = stage_changed(
            deal("d-1"),
            "closedwon",
            DealStatus.WON,
            previous=("demo", DealStatus.OPEN),
            account=account,
        )
        verdict = evaluate(classify(event), [])
        assert isinstance(verdict, Waiting)
        parked.append(park(verdict, event, now=T0))

    kept = await store.park(parked)

    assert kept == {parked[0].key}
