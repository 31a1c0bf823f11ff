"""The account's exclusivity rule (``services.enrollment.exclusivity``): no limit, one
live workflow at a time, or one exclusive workflow at a time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.enrollment.exclusivity import LiveElsewhere, rejections
from shared.contracts.enrollment_rules import Exclusivity

pytestmark = pytest.mark.unit


def codes(setting: Exclusivity, live: list[LiveElsewhere], *, exclusive: bool = False) -> list[str]:
    return [r.code for r in rejections(setting, workflow_id="w", exclusive=exclusive, live=live)]


def test_no_limit_admits_a_record_live_in_other_workflows() -> None:
    live = [LiveElsewhere("a", exclusive=True), LiveElsewhere("b", exclusive=False)]
    assert codes(Exclusivity.NO_LIMIT, live, exclusive=True) == []


def test_one_workflow_refuses_a_record_live_elsewhere_and_names_the_workflow() -> None:
    (rejection,) = rejections(
        Exclusivity.ONE_WORKFLOW,
        workflow_id="w",
        exclusive=False,
        live=[LiveElsewhere("b", exclusive=False), LiveElsewhere("a", exclusive=False)],
    )
    assert (rejection.code, rejection.workflow_id) == ("in_another_workflow", "a")
    assert "'a'" in rejection.detail


def test_one_workflow_leaves_the_same_workflow_to_the_re_enrollment_rules() -> None:
    assert codes(Exclusivity.ONE_WORKFLOW, [LiveElsewhere("w", exclusive=False)]) == []


def test_one_exclusive_workflow_refuses_a_second_exclusive_one() -> None:
    (rejection,) = rejections(
        Exclusivity.ONE_EXCLUSIVE_WORKFLOW,
        workflow_id="w",
        exclusive=True,
        live=[LiveElsewhere("plain", exclusive=False), LiveElsewhere("x", exclusive=True)],
    )
    assert (rejection.code, rejection.workflow_id) == ("in_another_exclusive_workflow", "x")


@pytest.mark.parametrize(
    ("exclusive", "other_exclusive"), [(False, True), (True, False), (False, False)]
)
def test_one_exclusive_workflow_lets_a_non_exclusive_pair_through(
    exclusive: bool, other_exclusive: bool
) -> None:
    live = [LiveElsewhere("x", exclusive=other_exclusive)]
    assert codes(Exclusivity.ONE_EXCLUSIVE_WORKFLOW, live, exclusive=exclusive) == []


live_sets = st.lists(
    st.builds(LiveElsewhere, st.sampled_from(["w", "a", "b", "c"]), st.booleans()), max_size=5
)


@given(setting=st.sampled_from(list(Exclusivity)), exclusive=st.booleans(), live=live_sets)
def test_a_record_is_refused_exactly_when_the_setting_counts_another_workflow(
    setting: Exclusivity, exclusive: bool, live: list[LiveElsewhere]
) -> None:
    found = rejections(setting, workflow_id="w", exclusive=exclusive, live=live)
    others = [x for x in live if x.workflow_id != "w"]
    counted = {
        Exclusivity.NO_LIMIT: [],
        Exclusivity.ONE_WORKFLOW: others,
        Exclusivity.ONE_EXCLUSIVE_WORKFLOW: [x for x in others if x.exclusive and exclusive],
    }[setting]
    assert len(found) == (1 if counted else 0)
    if found:
        assert found[0].workflow_id == min(x.workflow_id for x in counted)
