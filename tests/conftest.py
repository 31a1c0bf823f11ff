"""Session-wide infrastructure for the integration and end-to-end tiers.

Unit and handler tests never touch these fixtures, so ``make test-unit`` needs neither
Kafka nor PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from tests.support.infra import Infra, provide_infra
from tests.support.isolation import (
    create_database,
    delete_topics,
    drop_database,
    new_suffix,
    with_database,
)


@dataclass(frozen=True)
class SessionEnv:
    """One session's private slice of the servers."""

    kafka_bootstrap_servers: str
    database_url: str
    topic_namespace: str

    def service_env(self, **extra: str) -> dict[str, str]:
        """Environment for a service process started by a test."""
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "OFFRAMP_TOPIC_NAMESPACE": self.topic_namespace,
            "OFFRAMP_LOG_FORMAT": "json",
            **extra,
        }


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide_infra() as provided:
        yield provided


@contextlib.asynccontextmanager
async def private_env(infra: Infra) -> AsyncIterator[SessionEnv]:
    """A database and a topic namespace of its own on the shared servers; gone after."""
    suffix = new_suffix()
    database = f"offramp_test_{suffix}"
    namespace = f"test-{suffix}."
    await create_database(infra.database_url, database)
    try:
        yield SessionEnv(
            kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
            database_url=with_database(infra.database_url, database),
            topic_namespace=namespace,
        )
    finally:
        await drop_database(infra.database_url, database)
        await delete_topics(infra.kafka_bootstrap_servers, namespace)


@pytest.fixture(scope="session")
async def test_env(infra: Infra) -> AsyncIterator[SessionEnv]:
    async with private_env(infra) as env:
        yield env
