"""What a running ``make run`` chose: the file ``deploy/local/run.sh`` writes at start.

``run.sh`` picks free ports for the SMTP sink and the services' health endpoints (so two
checkouts can run side by side) and writes them, with Kafka's and PostgreSQL's addresses,
to ``${OFFRAMP_STATE_DIR:-.local}/run.env``; it removes the file when it stops. The CLI
and ``make demo`` read it to find that system.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("enrollment", "scheduler", "trigger-evaluator", "messaging")


def health_port_variable(service: str) -> str:
    """``OFFRAMP_HEALTH_PORT_<SERVICE>``: how run.sh names (and lets you pin) each port."""
    return "OFFRAMP_HEALTH_PORT_" + service.upper().replace("-", "_")


def run_env_path() -> Path:
    state = Path(os.environ.get("OFFRAMP_STATE_DIR") or REPO / ".local")
    # run.sh works from the checkout, so a relative state dir is relative to it.
    return state if state.is_absolute() else REPO / state


@dataclass(frozen=True, slots=True)
class RunEnv:
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> RunEnv | None:
        """The file of a ``make run`` that is still up, or None (absent or left by a crash)."""
        path = path or run_env_path() / "run.env"
        try:
            text = path.read_text()
        except OSError:
            return None
        values = {}
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip()
        found = cls(values)
        return found if found.alive() else None

    def alive(self) -> bool:
        pid = self.values.get("OFFRAMP_RUN_PID", "")
        if not pid.isdigit():
            return True  # written without a pid (run.sh ports): nothing to check
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @property
    def kafka(self) -> str | None:
        return self.values.get("KAFKA_BOOTSTRAP_SERVERS") or None

    @property
    def namespace(self) -> str:
        return self.values.get("OFFRAMP_TOPIC_NAMESPACE", "")

    @property
    def smtp_port(self) -> int | None:
        port = self.values.get("OFFRAMP_SMTP_PORT", "")
        return int(port) if port.isdigit() else None

    def health_urls(self) -> dict[str, str]:
        """``/readyz`` of each service whose health port is known, by service name."""
        urls = {}
        for service in SERVICES:
            port = self.values.get(health_port_variable(service), "")
            if port.isdigit():
                urls[service] = f"http://127.0.0.1:{port}/readyz"
        return urls


def probe(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """GET ``url`` (blocking): whether it answered 200, and what it said or why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local http
            return response.status == HTTPStatus.OK, response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.read(200).decode(errors='replace')}"
    except (OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))
