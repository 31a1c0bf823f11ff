"""The four services as processes that a test can break: kill -9 one, restart it, run a
second replica and take it away again, and ask each for its health."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import (
    SERVICES,
    ServiceProcess,
    SmtpSink,
    start_service,
    stop_services,
    wait_ready,
)
from tests.support.waiting import eventually


async def http_status(port: int, path: str) -> int | None:
    """The HTTP status of ``GET path`` on a health port; None if nothing answers."""
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
            writer.close()
    except (OSError, TimeoutError):
        return None
    parts = status.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


@dataclass
class System:
    """Offramp's services running on one environment, with an SMTP sink for their mail."""

    env: dict[str, str]
    log_dir: Path
    sink: SmtpSink
    replicas: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    gone: list[ServiceProcess] = field(default_factory=list)
    _starts: Counter[str] = field(default_factory=Counter)

    def _start(self, name: str) -> ServiceProcess:
        self._starts[name] += 1
        service = start_service(
            name, self.env, self.log_dir, log_name=f"{name}.{self._starts[name]}"
        )
        self.replicas.setdefault(name, []).append(service)
        return service

    async def start_all(self) -> None:
        for name in SERVICES:
            self._start(name)
        await wait_ready(self.processes())

    def processes(self) -> list[ServiceProcess]:
        return [service for name in SERVICES for service in self.replicas.get(name, [])]

    async def kill9(self, name: str) -> None:
        """SIGKILL every process of ``name``: no shutdown, no commit, no goodbye."""
        for service in self.replicas.pop(name, []):
            os.killpg(service.process.pid, signal.SIGKILL)
            await asyncio.to_thread(service.process.wait)
            self.gone.append(service)

    async def stop(self, name: str) -> None:
        """Stop every process of ``name`` gracefully (SIGTERM, as an orchestrator does)."""
        services = self.replicas.pop(name, [])
        await asyncio.to_thread(stop_services, services)
        self.gone.extend(services)

    async def start(self, name: str) -> ServiceProcess:
        """Start one more process of ``name`` (a restart or a replica); wait until ready."""
        service = self._start(name)
        await wait_ready([service])
        return service

    async def remove_replica(self, name: str) -> None:
        """The newest process of ``name`` leaves gracefully; the others keep running."""
        service = self.replicas[name].pop()
        await asyncio.to_thread(stop_services, [service])
        self.gone.append(service)

    async def statuses(self, path: str) -> dict[str, int | None]:
        return {
            f"{s.name}@{s.health_port}": await http_status(s.health_port, path)
            for s in self.processes()
        }

    async def all_answer(self, path: str, status: int, *, timeout: float = 60.0) -> None:
        await eventually(
            lambda: self.statuses(path),
            until=lambda found: all(code == status for code in found.values()),
            timeout=timeout,
            interval=0.25,
            what=f"every service to answer {path} with {status}",
        )

    def logged(self, service: str, event: str) -> list[dict[str, Any]]:
        """Every ``event`` that any process of ``service`` logged (JSON lines)."""
        found = []
        for path in sorted(self.log_dir.glob(f"{service}.*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if f'"{event}"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and entry.get("event") == event:
                        found.append(entry)
        return found

    def crashed(self) -> list[str]:
        """Processes that exited although no test stopped them."""
        return [
            f"{s.name} (exit {s.process.returncode}, log {s.log_path})"
            for s in self.processes()
            if s.process.poll() is not None
        ]

    async def shutdown(self) -> None:
        services = self.processes()
        self.replicas.clear()
        await asyncio.to_thread(stop_services, services)
        self.gone.extend(services)

    def log_tails(self, lines: int = 30) -> str:
        out = []
        for service in [*self.processes(), *self.gone]:
            with contextlib.suppress(OSError):
                out.append(f"----- {service.log_path.name} -----\n{service.log_tail(lines)}")
        return "\n".join(out)
