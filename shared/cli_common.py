"""What the ``offramp`` CLI's command modules share: settings, errors and tables.

Operator tooling, not plumbing: no service imports this module.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from shared.runenv import RunEnv

REPO = Path(__file__).resolve().parents[1]


class CliError(Exception):
    """A usage or input problem, printed without a traceback."""


def local_setting(name: str) -> str | None:
    """``name`` as the environment, a running ``make run`` (run.env) or the local
    infrastructure (``deploy/local/infra.sh env``) gives it, in that order."""
    value = os.environ.get(f"OFFRAMP_{name}") or os.environ.get(name)
    if value:
        return value
    running = RunEnv.load()
    if running is not None and running.values.get(name):
        return running.values[name]
    script = REPO / "deploy" / "local" / "infra.sh"
    if script.exists():
        result = subprocess.run(  # noqa: S603 - the project's own script, bash from PATH
            ["bash", str(script), "env"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        for line in result.stdout.splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1]
    return None


def bootstrap() -> tuple[str, str]:
    servers = local_setting("KAFKA_BOOTSTRAP_SERVERS")
    if servers is None:
        raise CliError("set KAFKA_BOOTSTRAP_SERVERS (or start the local system with `make run`)")
    namespace = os.environ.get("OFFRAMP_TOPIC_NAMESPACE")
    if namespace is None:
        # A running `make run` names its namespace, unless the environment chose the broker.
        running = RunEnv.load()
        from_run = running is not None and running.kafka == servers
        namespace = running.namespace if running is not None and from_run else ""
    return servers, namespace


def shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
