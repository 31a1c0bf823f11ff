"""Accounts never touch each other, on the real database: every table of every service is
keyed by account first, two accounts with the same ids stay two sets of rows, and the
migration that brought the account into the keys keeps what it can attribute."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.trigger_evaluator.domain import CompanySearch, Decision, MatchKind, Outcome
from services.trigger_evaluator.repository import PostgresTriggerEvaluatorStore
from services.trigger_evaluator.triggers import classify
from shared.contracts import Actor, ActorKind, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason, ExitSource
from shared.contracts.events import (
    EnrolledPayload,
    EnrollmentEnrolled,
    EnrollmentExited,
    ExitedPayload,
    MessageSent,
    MessageSentPayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import Channel, EmailReplied, EmailRepliedPayload
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from shared.migrations import migrate
from tests.conftest import SessionEnv

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "services"
SERVICE_NAMES = ("enrollment", "scheduler", "messaging", "trigger_evaluator")
OURS, THEIRS = "acc-ours", "acc-theirs"
USER = Actor(kind=ActorKind.USER, id="u-1")
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
# Plumbing tables (inbox, outbox...) are shared/sql's, keyed by another engineer's work.
SERVICE_TABLES = {
    "enrollment": {"workflows", "workflow_versions", "enrollments", "enrollment_history"},
    "scheduler": {"timers", "ended_enrollments"},
    "messaging": {"workflow_steps", "enrollments", "sends"},
    "trigger_evaluator": {"workflow_versions", "enrollments", "sent_messages", "decisions"},
}
# Scans of due work across every account, by design.
GLOBAL_INDEXES = {
    "timers_pending_due",
    "sends_pending_due",
    "sends_sending_lease",  # sends left by a crash, whatever their account
    "sends_parked_since",  # parked steps waiting too long, whatever their account
    "enrollments_by_alias",
}

Connect = Callable[[str, Path], Awaitable[asyncpg.Connection]]


@pytest.fixture
async def connect(test_env: SessionEnv) -> AsyncIterator[Connect]:
    """Opens a connection on a fresh schema migrated from ``migrations``; drops it after."""
    opened: list[tuple[asyncpg.Connection, str]] = []

    async def open_schema(prefix: str, migrations: Path) -> asyncpg.Connection:
        schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(test_env.database_url, server_settings={"search_path": schema})
        await migrate(conn, schema=schema, service_dir=migrations)
        opened.append((conn, schema))
        return conn

    yield open_schema
    for conn, schema in opened:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_every_key_of_every_table_starts_with_the_account(
    connect: Connect, service: str
) -> None:
    conn = await connect("keys", SERVICES / service / "migrations")
    rows = await conn.fetch(
        """SELECT t.relname AS table_name, i.relname AS index_name, x.indisprimary,
                  a.attname AS first_column
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
           WHERE t.relnamespace = current_schema()::regnamespace
             AND t.relname = ANY($1::text[])""",
        list(SERVICE_TABLES[service]),
    )
    primary = {r["table_name"]: r["first_column"] for r in rows if r["indisprimary"]}
    assert primary == dict.fromkeys(SERVICE_TABLES[service], "account_id")
    others = {
        r["index_name"]: r["first_column"]
        for r in rows
        if not r["indisprimary"] and r["index_name"] not in GLOBAL_INDEXES
    }
    assert set(others.values()) <= {"account_id"}, others


async def test_the_scheduler_migration_keeps_ended_enrollments_it_can_attribute(
    connect: Connect, tmp_path: Path
) -> None:
    first = tmp_path / "migrations"
    first.mkdir()
    shutil.copy(SERVICES / "scheduler" / "migrations" / "0001_timers.sql", first)
    conn = await connect("sched_up", first)
    with_timer, without_timer = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        """INSERT INTO timers (enrollment_id, step_index, account_id, workflow_id,
                               workflow_version, record_type, record_id, step_id, channel,
                               due_at, state)
           VALUES ($1, 0, $2, 'wf', 1, 'contact', 'c-1', 's0', 'email', now(), 'cancelled')""",
        with_timer,
        OURS,
    )
    await conn.execute(
        "INSERT INTO ended_enrollments (enrollment_id, outcome) VALUES ($1, 'exited'), ($2, 'x')",
        with_timer,
        without_timer,
    )
    schema = await conn.fetchval("SELECT current_schema()")

    await migrate(conn, schema=schema, service_dir=SERVICES / "scheduler" / "migrations")

    rows = await conn.fetch("SELECT account_id, enrollment_id, outcome FROM ended_enrollments")
    assert [tuple(r) for r in rows] == [(OURS, with_timer, "exited")]


def workflow(account_id: str) -> WorkflowApplied:
    definition = WorkflowDefinition(
        workflow_id="wf",
        name="Onboarding",
        record_type=RecordType.CONTACT,
        steps=(Step(step_id="hello", body="Hello"),),
        settings=WorkflowSettings(
            exit_triggers=frozenset({ExitTrigger.REPLIED}), unenroll_company_on_reply=True
        ),
    )
    return WorkflowApplied.create(
        account_id=account_id,
        payload=WorkflowAppliedPayload(version=1, definition=definition, actor=USER),
    )


async def test_trigger_evaluator_keeps_two_accounts_with_the_same_ids_apart(
    connect: Connect,
) -> None:
    """Same enrollment id, workflow, record, email, alias, company, Message-ID, event id."""
    conn = await connect("trig_apart", SERVICES / "trigger_evaluator" / "migrations")
    repository = PostgresTriggerEvaluatorStore(conn)
    enrollment_id = uuid.uuid4()
    record = RecordRef(type=RecordType.CONTACT, id="c-1")
    ref: dict[str, Any] = {
        "enrollment_id": enrollment_id,
        "workflow_id": "wf",
        "workflow_version": 1,
        "record": record,
    }
    contact = ContactDetails(
        email="ann@acme.com", aliases=("a@acme.com",), company_domain="acme.com"
    )
    enrolled = {
        a: EnrollmentEnrolled.create(
            account_id=a, payload=EnrolledPayload(**ref, contact=contact, actor=USER)
        )
        for a in (OURS, THEIRS)
    }
    exited = EnrollmentExited.create(
        account_id=THEIRS,
        payload=ExitedPayload(
            **ref,
            reason=ExitReason.MANUAL,
            source=ExitSource.MANUAL,
            actor=USER,
            steps_completed=0,
        ),
    )
    sent = [
        MessageSent.create(
            account_id=a,
            payload=MessageSentPayload(
                **ref,
                step_index=0,
                step_id="hello",
                channel=Channel.EMAIL,
                provider_message_id="<m-1@offramp>",
                recipient="ann@acme.com",
                sent_at=AT,
            ),
        )
        for a in (OURS, THEIRS)
    ]
    await repository.save_workflow_versions([workflow(OURS), workflow(THEIRS)])
    # Theirs ends in the same run as both enroll: it must not end ours.
    await repository.save_enrollment_events([enrolled[OURS], enrolled[THEIRS], exited])
    await repository.save_sent_messages(sent)
    rows = await conn.fetch("SELECT account_id, enrollment_id, status FROM enrollments")
    assert sorted(tuple(r) for r in rows) == [
        (OURS, enrollment_id, "active"),
        (THEIRS, enrollment_id, "ended"),
    ]

    inbound_id = uuid.uuid4()
    replies = [
        EmailReplied.create(
            account_id=a,
            message_id=inbound_id,
            payload=EmailRepliedPayload(
                from_address="a@acme.com",
                message_header_id="<r@mail>",
                in_reply_to="<m-1@offramp>",
                record=record,
            ),
        )
        for a in (OURS, THEIRS)
    ]
    signals = [classify(event) for event in replies]
    found = await repository.candidates(signals)
    colleagues = await repository.live_by_company(
        [CompanySearch(OURS, ["acme.com"]), CompanySearch(THEIRS, ["acme.com"])]
    )

    for account, candidates in zip((OURS, THEIRS), found, strict=True):
        assert {c.enrollment.account_id for c in candidates} == {account}
        assert {c.matched_by for c in candidates} == {
            MatchKind.THREAD,
            MatchKind.RECORD,
            MatchKind.ADDRESS,
        }
    assert {c.enrollment.status.live for c in found[0]} == {True}
    assert {c.enrollment.status.live for c in found[1]} == {False}
    assert [[v.account_id for v in views] for views in colleagues] == [[OURS], []]

    # The same inbound event id in two accounts: two decisions, neither a "duplicate".
    decided = [Decision(event=s, outcome=Outcome.IGNORED, why="test") for s in signals]
    await repository.save_decisions(decided)
    await repository.save_decisions(decided)
    rows = await conn.fetch("SELECT account_id, inbound_message_id FROM decisions")
    assert sorted(tuple(r) for r in rows) == [(OURS, inbound_id), (THEIRS, inbound_id)]
