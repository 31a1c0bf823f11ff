"""Offramp services as real processes, and a real SMTP server that receives their mail."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.infra import REPO
from tests.support.waiting import eventually

SERVICES = ("enrollment", "scheduler", "trigger_evaluator", "messaging")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Delivery:
    """One email the sink accepted, with when its sender got through to the server."""

    message: EmailMessage
    mail_from_at: datetime
    """When this message's MAIL FROM arrived: later than the moment its sender started the
    provider call (messaging's pooled connections send MAIL FROM for a message only once
    its call has taken a connection)."""
    received_at: datetime
    """When its DATA was accepted."""


@dataclass
class SmtpSink:
    """Collects every email delivered to it (aiosmtpd handler interface), and when."""

    messages: list[EmailMessage] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    async def handle_MAIL(  # noqa: N802
        self, _server: Any, _session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.offramp_mail_from_at = datetime.now(UTC)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        received_at = datetime.now(UTC)
        message = message_from_bytes(envelope.original_content or envelope.content)
        mail_from_at = getattr(envelope, "offramp_mail_from_at", received_at)
        self.deliveries.append(Delivery(message, mail_from_at, received_at))
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    health_port: int

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def start_services(env: dict[str, str], log_dir: Path) -> list[ServiceProcess]:
    return [start_service(name, env, log_dir) for name in SERVICES]


def start_service(
    name: str, env: dict[str, str], log_dir: Path, *, log_name: str | None = None
) -> ServiceProcess:
    """Start one service process; its output is appended to ``<log_name or name>.log``."""
    port = free_port()
    log_path = log_dir / f"{log_name or name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO,
            env={**env, "OFFRAMP_HEALTH_PORT": str(port)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServiceProcess(name, process, log_path, port)


async def ready(service: ServiceProcess) -> bool:
    if service.process.poll() is not None:
        raise AssertionError(f"{service.name} exited early:\n{service.log_tail()}")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.health_port)
    except OSError:
        return False
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return b" 200 " in status


def stop_services(services: list[ServiceProcess], timeout: float = 20.0) -> None:
    for service in services:
        if service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGTERM)
    for service in services:
        try:
            service.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()


async def wait_ready(services: list[ServiceProcess], timeout: float = 60.0) -> None:
    """Wait until every service answers /readyz (fails early if one exits)."""
    for service in services:
        await eventually(
            functools.partial(ready, service), timeout=timeout, what=f"{service.name} ready"
        )


@contextlib.asynccontextmanager
async def running_services(
    env: dict[str, str], log_dir: Path, *, replicas: Sequence[str] = (), **extra_env: str
) -> AsyncIterator[tuple[SmtpSink, list[ServiceProcess]]]:
    """The four services as processes on ``env``, and a second replica of each service in
    ``replicas``, sending to a real SMTP sink; ready when entered, stopped on exit. If the
    block fails, each service's log tail is printed."""
    with smtp_server() as (sink, smtp_port):
        service_env = {
            **env,
            "OFFRAMP_SMTP_PORT": str(smtp_port),
            "OFFRAMP_SMTP_HOST": "127.0.0.1",
            **extra_env,
        }
        services = start_services(service_env, log_dir)
        services += [
            start_service(name, service_env, log_dir, log_name=f"{name}-2") for name in replicas
        ]
        try:
            await wait_ready(services)
            yield sink, services
        except BaseException:
            for service in services:
                print(f"----- {service.name} -----\n{service.log_tail()}")
            raise
        finally:
            await asyncio.to_thread(stop_services, services)
