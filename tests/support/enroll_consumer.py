"""A throwaway service that consumes ``enrollment.enroll`` with a test's own handler: the
pipeline on the real broker and database, with nothing of Offramp's services around it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from shared.consumer import Handler
from shared.contracts import topics
from shared.contracts.commands import Enroll
from shared.runtime import ServiceRuntime, ServiceSpec, build_app
from shared.settings import ServiceSettings
from tests.conftest import SessionEnv

TestRuntime = ServiceRuntime[ServiceSettings, Any]


@contextlib.asynccontextmanager
async def enroll_consumer(
    test_env: SessionEnv, name: str, migrations_dir: Path, handle: Handler, **settings: Any
) -> AsyncIterator[TestRuntime]:
    """Run a service whose only handler is ``handle``, in a schema and topic namespace of
    its own (nothing else published in the session reaches it)."""
    suffix = uuid.uuid4().hex[:8]
    spec: ServiceSpec[ServiceSettings, Any] = ServiceSpec(
        name=name,
        schema=f"{name.replace('-', '_')}_{suffix}",
        description="test service",
        migrations_dir=migrations_dir,
        consumes=(topics.COMMANDS,),
        publishes=(topics.DEAD_LETTER,),
        settings=ServiceSettings,
        store=lambda conn: conn,
        handlers=lambda _settings: {Enroll.TYPE: handle},
    )
    app, runtime = build_app(
        spec,
        ServiceSettings(
            kafka_bootstrap_servers=test_env.kafka_bootstrap_servers,
            database_url=test_env.database_url,
            topic_namespace=f"{test_env.topic_namespace}{name}-{suffix}.",
            consumer_backoff_initial_s=0.05,
            log_format="console",
            **settings,
        ),
    )
    await app.start()
    try:
        yield runtime
    finally:
        await app.stop()
