"""FastStream wiring on the in-memory TestKafkaBroker: each service's one subscriber reads
all its topics (namespaced) and hands the pipeline the raw records, bad ones included."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from shared.contracts.topics import physical
from shared.runtime import build_app

pytestmark = pytest.mark.handler

NAMESPACE = "wiring."


class RecordingPipeline:
    def __init__(self) -> None:
        self.batches: list[list[tuple[str, bytes]]] = []

    async def process_batch(self, records: Sequence[Any]) -> None:
        self.batches.append([(r.topic, r.value) for r in records])


@pytest.mark.parametrize("service", ["enrollment", "scheduler", "trigger_evaluator", "messaging"])
async def test_every_consumed_topic_reaches_the_pipeline_as_raw_bytes(service: str) -> None:
    module = importlib.import_module(f"services.{service}.app")
    spec = module.SPEC
    settings = spec.settings(topic_namespace=NAMESPACE)
    _app, runtime = build_app(spec, settings)
    recorder = RecordingPipeline()
    runtime.pipeline.process_batch = recorder.process_batch  # type: ignore[method-assign,union-attr]

    async with TestKafkaBroker(runtime.broker) as broker:
        for topic in spec.consumes:
            await broker.publish(b"{not json", topic=physical(topic, NAMESPACE))

    seen = [record for batch in recorder.batches for record in batch]
    assert sorted(seen) == sorted((physical(t, NAMESPACE), b"{not json") for t in spec.consumes)
