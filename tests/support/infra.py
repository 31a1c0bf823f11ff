"""Where the tests' Kafka broker and PostgreSQL come from, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` when both are set;
2. testcontainers (Kafka in KRaft mode, PostgreSQL) when a Docker engine answers;
3. the project's own provisioning, ``deploy/local/infra.sh up`` (Kafka from Maven
   Central, PostgreSQL from Debian's packages), which starts them or reuses them.

A test that needs them never skips: if none of these works, the session fails with the
reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.2"
POSTGRES_IMAGE = "postgres:15"


class InfrastructureError(RuntimeError):
    """Kafka or PostgreSQL could not be provided; the message says what to do."""


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap_servers: str
    database_url: str
    source: str


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextlib.contextmanager
def _testcontainers() -> Iterator[Infra]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
        PostgresContainer(
            POSTGRES_IMAGE, username="offramp", password="offramp", dbname="offramp"
        ) as postgres,
    ):
        url = postgres.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
        yield Infra(kafka.get_bootstrap_server(), url, "testcontainers")


def _local() -> Infra:
    script = REPO / "deploy" / "local" / "infra.sh"
    result = subprocess.run(
        ["bash", str(script), "up"], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        raise InfrastructureError(
            f"deploy/local/infra.sh up failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    try:
        return Infra(values["KAFKA_BOOTSTRAP_SERVERS"], values["DATABASE_URL"], "local")
    except KeyError as exc:
        raise InfrastructureError(f"infra.sh up printed no {exc}: {result.stdout!r}") from exc


@contextlib.contextmanager
def provide_infra() -> Iterator[Infra]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    if kafka and database:
        yield Infra(kafka, database, "environment")
    elif _docker_answers():
        with _testcontainers() as infra:
            yield infra
    else:
        yield _local()
