"""``/metrics`` carries every whole number of each background loop's stats, e.g. the
sender's re-sends after a crash."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from services.messaging.config import MessagingSettings
from services.messaging.send_limits import SenderQueue
from services.messaging.sender_housekeeping import SenderStats
from services.messaging.sender_loop import SenderLoop
from shared.metrics import _loop_stats
from tests.support.builders.enrollment_events import T0

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


def test_the_sender_loop_reports_the_queue_per_sender_as_gauges() -> None:
    runtime: Any = SimpleNamespace(
        settings=MessagingSettings(email_provider="log"),
        clock=lambda: T0,
        stopping=asyncio.Event(),
    )
    loop = SenderLoop(runtime)
    loop.queue = [
        SenderQueue("acme", "sales@acme.test", 7, 5, T0, 350, T0 + timedelta(hours=2)),
        SenderQueue("acme", "+15550100", 1, 0, None, 3, None),
    ]

    families = {f.name: f for f in loop.metric_families("messaging")}

    def value(name: str, sender: str) -> float:
        (sample,) = [s for s in families[name].samples if s.labels["sender"] == sender]
        assert sample.labels["account"] == "acme"
        return sample.value

    assert value("offramp_sends_waiting", "sales@acme.test") == 7
    assert value("offramp_sends_due", "sales@acme.test") == 5
    assert value("offramp_send_limit_used", "sales@acme.test") == 350
    assert value("offramp_send_limit_full", "sales@acme.test") == 1
    assert value("offramp_send_limit_full", "+15550100") == 0
