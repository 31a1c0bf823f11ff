"""``/metrics`` carries every whole number of each background loop's stats, e.g. the
sender's re-sends after a crash."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from services.messaging.sender import SenderStats
from shared.metrics import _loop_stats

pytestmark = pytest.mark.unit


def test_a_loops_counts_are_gauges_labelled_by_loop_and_stat() -> None:
    stats = SenderStats(sent=3, sends_resent_after_crash=1, last_tick_monotonic=12.5)
    runtime: Any = SimpleNamespace(loops={"SenderLoop": SimpleNamespace(stats=stats)})

    family = _loop_stats("messaging", runtime)

    samples = {s.labels["stat"]: s.value for s in family.samples}
    assert samples["sent"] == 3
    assert samples["sends_resent_after_crash"] == 1
    assert "last_tick_monotonic" not in samples  # a float reading, not a count
    assert {s.labels["loop"] for s in family.samples} == {"SenderLoop"}
