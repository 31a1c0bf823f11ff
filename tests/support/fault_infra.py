"""A private Kafka broker and PostgreSQL for the fault-injection suite.

The fault tests stop and start the broker and the database for real, so they cannot use
the session's shared servers: ``deploy/local/infra.sh`` with its own state directory
(``.local/fault``) gives a second, fully isolated instance with its own ports, data and
processes, which the suite may take down while other tiers keep running.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.infra import REPO, InfrastructureError

SCRIPT = REPO / "deploy" / "local" / "infra.sh"
STATE_DIR = REPO / ".local" / "fault"


@dataclass(frozen=True)
class FaultInfra:
    """The suite's own broker and database, and the switches that stop and start them."""

    kafka_bootstrap_servers: str
    database_url: str
    state_dir: Path = STATE_DIR

    @classmethod
    def up(cls, state_dir: Path = STATE_DIR) -> FaultInfra:
        values = dict(
            line.split("=", 1) for line in _infra("up", state_dir).splitlines() if "=" in line
        )
        try:
            return cls(values["KAFKA_BOOTSTRAP_SERVERS"], values["DATABASE_URL"], state_dir)
        except KeyError as exc:
            raise InfrastructureError(f"infra.sh up printed no {exc}") from exc

    async def kafka_down(self) -> None:
        await asyncio.to_thread(_infra, "kafka-down", self.state_dir)

    async def kafka_up(self) -> None:
        await asyncio.to_thread(_infra, "kafka-up", self.state_dir)

    async def postgres_down(self) -> None:
        await asyncio.to_thread(_infra, "postgres-down", self.state_dir)

    async def postgres_up(self) -> None:
        await asyncio.to_thread(_infra, "postgres-up", self.state_dir)

    def ensure_up(self) -> None:
        """Start whatever a failed test left stopped (ports and data are kept)."""
        _infra("up", self.state_dir)


def _infra(command: str, state_dir: Path) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "OFFRAMP_STATE_DIR": str(state_dir)},
    )
    if result.returncode != 0:
        raise InfrastructureError(
            f"infra.sh {command} (state {state_dir}) failed (exit {result.returncode}):\n"
            f"{result.stderr[-3000:]}"
        )
    return result.stdout
