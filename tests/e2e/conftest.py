"""What most end-to-end tests start from: the four services on a database and topics of
their own, so that other tests' messages never count in theirs, nor theirs in others'."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import SessionEnv, private_env
from tests.support.infra import Infra
from tests.support.processes import ServiceProcess, SmtpSink, running_services

System = tuple[SessionEnv, SmtpSink, list[ServiceProcess]]


@pytest.fixture
async def system(infra: Infra, tmp_path: Path) -> AsyncIterator[System]:
    """The four services and the SMTP sink on a private database and topic namespace
    (a test file may define its own ``system`` to start them otherwise)."""
    async with (
        private_env(infra) as own,
        running_services(own.service_env(), tmp_path) as (sink, services),
    ):
        yield own, sink, services
