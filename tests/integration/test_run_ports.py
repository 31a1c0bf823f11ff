"""``make run`` twice on one machine: ``run.sh`` chooses free SMTP-sink and health ports,
honours pinned ones, and writes them where the CLI and ``make demo`` find them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.runenv import SERVICES, RunEnv, health_port_variable

pytestmark = pytest.mark.integration

RUN_SH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "run.sh"
PORT_VARIABLES = ["OFFRAMP_SMTP_PORT", *(health_port_variable(s) for s in SERVICES)]


def choose_ports(state_dir: Path, **pinned: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in PORT_VARIABLES}
    return subprocess.run(
        ["bash", str(RUN_SH), "ports"],
        env={**env, "OFFRAMP_STATE_DIR": str(state_dir), **pinned},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def written(state_dir: Path) -> dict[str, int]:
    lines = (state_dir / "run.env").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    return {name: int(values[name]) for name in PORT_VARIABLES}


@contextlib.contextmanager
def listening(ports: list[int]) -> Iterator[None]:
    """Hold ``ports`` the way a running system does, on every address."""
    sockets = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))  # noqa: S104 - as the health servers do
            sock.listen()
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()


def test_a_second_run_beside_a_running_one_gets_other_free_ports(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert choose_ports(first).returncode == 0
    ports = written(first)
    assert len(set(ports.values())) == len(PORT_VARIABLES)
    with listening(list(ports.values())):
        result = choose_ports(second)
    assert result.returncode == 0, result.stderr
    assert not set(written(second).values()) & set(ports.values())


def test_the_run_file_names_every_endpoint_and_reads_back(tmp_path: Path) -> None:
    result = choose_ports(tmp_path)
    assert result.returncode == 0, result.stderr
    ports = written(tmp_path)
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    run_env = RunEnv(values)
    assert run_env.smtp_port == ports["OFFRAMP_SMTP_PORT"]
    assert run_env.health_urls() == {
        s: f"http://127.0.0.1:{ports[health_port_variable(s)]}/readyz" for s in SERVICES
    }
    # Written by a process that has ended: the CLI does not take it for a running system.
    assert RunEnv.load(tmp_path / "run.env") is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_pinned_ports_win(tmp_path: Path) -> None:
    smtp, messaging = free_port(), free_port()
    result = choose_ports(
        tmp_path, OFFRAMP_SMTP_PORT=str(smtp), OFFRAMP_HEALTH_PORT_MESSAGING=str(messaging)
    )
    assert result.returncode == 0, result.stderr
    ports = written(tmp_path)
    assert ports["OFFRAMP_SMTP_PORT"] == smtp
    assert ports["OFFRAMP_HEALTH_PORT_MESSAGING"] == messaging
    assert len(set(ports.values())) == len(PORT_VARIABLES)


def test_a_pinned_port_in_use_is_refused_with_its_name(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        result = choose_ports(tmp_path, OFFRAMP_HEALTH_PORT_SCHEDULER=str(busy))
    assert result.returncode == 1
    assert f"OFFRAMP_HEALTH_PORT_SCHEDULER={busy} is in use" in result.stderr
    assert not (tmp_path / "run.env").exists()
