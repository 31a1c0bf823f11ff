"""trigger-evaluator's batch SQL on the real database: a run of a few hundred messages in
one statement per table leaves exactly what the same messages one by one leave."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.trigger_evaluator.domain import (
    Candidate,
    CompanySearch,
    Decision,
    EnrollmentStatus,
    EnrollmentView,
    MatchKind,
    Outcome,
    company_domain_key,
    exit_message_id,
)
from services.trigger_evaluator.handlers import TriggerHandlers
from services.trigger_evaluator.ports import TriggerEvaluatorStore
from services.trigger_evaluator.projection import EnrollmentEvent
from services.trigger_evaluator.repository import PostgresTriggerEvaluatorStore
from services.trigger_evaluator.triggers import classify
from shared.contracts import ActorKind, Message, RecordRef, RecordType
from shared.contracts.commands import ContactDetails, ExitReason
from shared.contracts.events import (
    EnrollmentEnrolled,
    MessageSent,
    MessageSentPayload,
)
from shared.contracts.inbound import (
    Channel,
)
from shared.contracts.workflow import ExitTrigger
from shared.migrations import migrate
from shared.uow import UnitOfWork
from tests.conftest import SessionEnv
from tests.support.builders.enrollment_events import USER
from tests.support.builders.trigger_traffic import (
    ACCOUNTS,
    inbound_events,
    populate,
    random_enrollment_event,
    ref,
    workflow,
)
from tests.support.fakes.trigger_evaluator import FakeTriggerEvaluatorStore

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "trigger_evaluator" / "migrations"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

Connect = Callable[[], Awaitable[asyncpg.Connection]]

# What the service ran per message before batching: the reference a run must reproduce.
_ENROLLED_ALONE = """
    INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                             record_type, record_id, email, aliases, company_domain,
                             enrolled_by_user_id, enrolled_at, status)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'active')
    ON CONFLICT (account_id, enrollment_id) DO UPDATE
        SET email = EXCLUDED.email, aliases = EXCLUDED.aliases,
            company_domain = EXCLUDED.company_domain,
            enrolled_by_user_id = EXCLUDED.enrolled_by_user_id,
            enrolled_at = LEAST(enrollments.enrolled_at, EXCLUDED.enrolled_at),
            updated_at = now()"""
_STATUS_ALONE = """
    INSERT INTO enrollments (enrollment_id, account_id, workflow_id, workflow_version,
                             record_type, record_id, status)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (account_id, enrollment_id) DO UPDATE
        SET status = EXCLUDED.status, updated_at = now()
        WHERE enrollments.status <> 'ended'"""


@pytest.fixture
async def connect(test_env: SessionEnv) -> AsyncIterator[Connect]:
    """Opens connections, each on a freshly migrated scratch schema; drops them after."""
    opened: list[tuple[asyncpg.Connection, str]] = []

    async def open_schema() -> asyncpg.Connection:
        schema = f"trig_{uuid.uuid4().hex[:8]}"
        connection = await asyncpg.connect(
            test_env.database_url, server_settings={"search_path": schema}
        )
        await migrate(connection, schema=schema, service_dir=MIGRATIONS)
        opened.append((connection, schema))
        return connection

    yield open_schema
    for connection, schema in opened:
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await connection.close()


class CountingConnection:
    """A connection that counts the statements sent through it (one round trip each)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)
        if name in {"execute", "executemany", "fetch", "fetchrow", "fetchval"}:
            self.statements += 1
        return method


async def apply_alone(conn: asyncpg.Connection, event: EnrollmentEvent) -> None:
    p = event.payload
    key = (p.enrollment_id, event.account_id, p.workflow_id, p.workflow_version)
    record = (p.record.type.value, p.record.id)
    if isinstance(event, EnrollmentEnrolled):
        contact = event.payload.contact or ContactDetails()
        user = USER.id if event.payload.actor.kind is ActorKind.USER else None
        domain = company_domain_key(contact.company_domain)
        await conn.execute(
            _ENROLLED_ALONE,
            *key,
            *record,
            contact.email,
            list(contact.aliases),
            domain,
            user,
            event.occurred_at,
        )
    else:
        status = {"enrollment.paused": "paused", "enrollment.resumed": "active"}
        await conn.execute(_STATUS_ALONE, *key, *record, status.get(event.type, "ended"))


async def changed_now(conn: asyncpg.Connection) -> set[tuple[str, uuid.UUID]]:
    """The enrollments the current transaction wrote."""
    rows = await conn.fetch(
        "SELECT account_id, enrollment_id FROM enrollments WHERE updated_at = now()"
    )
    return {(row["account_id"], row["enrollment_id"]) for row in rows}


async def table(conn: asyncpg.Connection, name: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(f"SELECT * FROM {name}")
    drop = {"updated_at", "applied_at", "decided_at", "id"}
    return sorted((tuple(v for k, v in row.items() if k not in drop) for row in rows), key=repr)


async def test_runs_of_enrollment_events_leave_what_the_events_one_by_one_leave(
    connect: Connect,
) -> None:
    batched, alone = await connect(), await connect()
    rng = random.Random(7)
    ids = [(uuid.uuid4(), ACCOUNTS[n % 2], n) for n in range(80)]
    events = [random_enrollment_event(rng, *rng.choice(ids)) for _ in range(600)]
    runs, start = [], 0
    while start < len(events):
        length = rng.choice([1, 2, 5, 30, 120])
        runs.append(events[start : start + length])
        start += length

    counting = CountingConnection(batched)
    touched: dict[str, list[set[tuple[str, uuid.UUID]]]] = {"batched": [], "alone": []}
    for run in runs:
        async with batched.transaction():
            await PostgresTriggerEvaluatorStore(counting).save_enrollment_events(run)  # type: ignore[arg-type]
            touched["batched"].append(await changed_now(batched))
        async with alone.transaction():
            for event in run:
                await apply_alone(alone, event)
            touched["alone"].append(await changed_now(alone))

    assert counting.statements == len(runs)
    assert touched["batched"] == touched["alone"]  # the same rows written, no more
    assert await table(batched, "enrollments") == await table(alone, "enrollments")
    statuses = {row["status"] for row in await batched.fetch("SELECT status FROM enrollments")}
    assert statuses == {"active", "paused", "ended"}


async def test_workflow_versions_and_sent_emails_keep_the_first_of_a_run(connect: Connect) -> None:
    conn = await connect()
    repository = PostgresTriggerEvaluatorStore(conn)
    first = [workflow(a, v, company=True) for a in ACCOUNTS for v in range(1, 151)]
    await repository.save_workflow_versions([workflow("acc-a", 1), *first, *first])
    await repository.save_workflow_versions(first)
    rows = await conn.fetch(
        "SELECT * FROM workflow_versions ORDER BY account_id, version, workflow_id"
    )
    assert len(rows) == 300
    assert (rows[0]["exit_triggers"], rows[0]["unenroll_company_on_reply"]) == (
        ["hard_bounced", "link_clicked", "replied"],
        False,  # the first of the run won
    )
    assert (rows[1]["exit_triggers"], rows[1]["unenroll_company_on_reply"]) == ([], True)

    sent = [
        MessageSent.create(
            account_id=account_id,
            payload=MessageSentPayload(
                **ref(uuid.UUID(int=n), "c-1"),
                step_index=0,
                step_id="hello",
                channel=Channel.EMAIL,
                provider_message_id=" <> " if n == 7 else f" <m-{n % 250}@offramp> ",
                recipient="p@dom.com",
                sent_at=AT,
            ),
        )
        for account_id in ACCOUNTS
        for n in range(500)
    ]
    await repository.save_sent_messages(sent[:300])
    await repository.save_sent_messages(sent)
    quoted: dict[tuple[str, str], uuid.UUID] = {}
    for event in sent:
        if event.payload.provider_message_id != " <> ":
            key = (event.account_id, event.payload.provider_message_id.strip(" <>"))
            quoted.setdefault(key, event.payload.enrollment_id)
    rows = await conn.fetch("SELECT * FROM sent_messages")
    assert {(r["account_id"], r["provider_message_id"]): r["enrollment_id"] for r in rows} == quoted
    assert len(rows) == 500
    assert quoted["acc-a", "m-7@offramp"] == uuid.UUID(int=257)  # a blank Message-ID is skipped


def comparable(candidates: list[Candidate]) -> list[Candidate]:
    # Sorted by key, compared by value: a repr would depend on a frozenset's order.
    return sorted(candidates, key=lambda c: (c.matched_by.rank, c.enrollment.enrollment_id))


def by_id(views: list[EnrollmentView]) -> list[EnrollmentView]:
    return sorted(views, key=lambda view: view.enrollment_id)


async def test_a_runs_candidates_are_what_each_events_lookups_find(connect: Connect) -> None:
    conn = await connect()
    repository, fake = PostgresTriggerEvaluatorStore(conn), FakeTriggerEvaluatorStore()
    await populate(repository, random.Random(3))
    await populate(fake, random.Random(3))
    signals = [classify(event) for event in inbound_events(random.Random(5), 400)]
    counting = CountingConnection(conn)

    found = await PostgresTriggerEvaluatorStore(counting).candidates(signals)  # type: ignore[arg-type]
    searches = [
        CompanySearch(s.account_id, (f"dom{i % 5}.com", "nowhere.org"))
        for i, s in enumerate(signals)
    ]
    colleagues = await PostgresTriggerEvaluatorStore(counting).live_by_company(searches)  # type: ignore[arg-type]

    assert counting.statements == 2
    expected = await fake.candidates(signals)
    assert [comparable(f) for f in found] == [comparable(e) for e in expected]
    kinds = {c.matched_by for candidates in found for c in candidates}
    assert kinds == {MatchKind.THREAD, MatchKind.RECORD, MatchKind.ATTENDEE, MatchKind.ADDRESS}
    assert sum(c.enrollment.workflow is None for f in found for c in f) == 0
    expected_colleagues = await fake.live_by_company(searches)
    assert [by_id(c) for c in colleagues] == [by_id(e) for e in expected_colleagues]
    assert all(colleagues)


async def test_the_inbound_handler_decides_a_run_as_its_events_alone(connect: Connect) -> None:
    conn = await connect()
    await populate(PostgresTriggerEvaluatorStore(conn), random.Random(3))
    events = inbound_events(random.Random(11), 300)
    counting = CountingConnection(conn)
    handlers = TriggerHandlers()

    parked: dict[str, list[tuple[Any, ...]]] = {}

    async def decide(run: list[Message]) -> tuple[list[tuple[Any, ...]], list[str]]:
        async with conn.transaction():
            store = PostgresTriggerEvaluatorStore(counting)  # type: ignore[arg-type]
            uow: UnitOfWork[TriggerEvaluatorStore] = UnitOfWork(None, store)
            await handlers.inbound(uow, run, AT)
            decided = await table(conn, "decisions")
            await conn.execute("DELETE FROM decisions")
        return decided, [o.headers["message-id"] for o in uow.outgoing]

    as_run = await decide(events)
    statements = counting.statements
    parked["as_run"] = await table(conn, "parked_events")
    await conn.execute("DELETE FROM parked_events")
    one_by_one = [await decide([event]) for event in events]
    parked["one_by_one"] = await table(conn, "parked_events")

    # candidates, colleagues of repliers, decisions, and one batched statement that parks
    # the run's events that matched no enrollment (some of this traffic matches no one)
    assert statements == 4
    assert sorted(as_run[0], key=repr) == sorted(
        (row for decided, _ in one_by_one for row in decided), key=repr
    )
    assert as_run[1] == [exit_id for _, exits in one_by_one for exit_id in exits]
    assert parked["as_run"] == parked["one_by_one"]
    assert parked["as_run"]  # the run parked what matched no one
    outcomes = {row[8] for row in as_run[0]}
    assert outcomes == {Outcome.EXIT.value, Outcome.IGNORED.value}
    assert len(as_run[1]) > 50


async def test_decisions_are_recorded_once_per_event_and_enrollment(connect: Connect) -> None:
    conn = await connect()
    repository = PostgresTriggerEvaluatorStore(conn)
    events = inbound_events(random.Random(13), 300)
    view = EnrollmentView(
        enrollment_id=uuid.uuid4(),
        account_id="acc-a",
        workflow_id="wf",
        workflow_version=1,
        record=RecordRef(type=RecordType.CONTACT, id="c-1"),
        status=EnrollmentStatus.ACTIVE,
        workflow=None,
    )
    decided = [
        Decision(event=classify(event), outcome=Outcome.IGNORED, why="no enrollment matched")
        if i % 2
        else Decision(
            event=classify(event),
            outcome=Outcome.EXIT,
            why="replied (matched by address)",
            trigger=ExitTrigger.REPLIED,
            reason=ExitReason.REPLIED,
            enrollment=view,
            record=view.record,
            matched_by=MatchKind.ADDRESS,
            exit_message_id=exit_message_id(event.account_id, event.message_id, view.enrollment_id),
        )
        for i, event in enumerate(events)
    ]
    await repository.save_decisions(decided)
    await repository.save_decisions(decided)  # a replayed run adds nothing
    rows = await conn.fetch("SELECT * FROM decisions ORDER BY id")
    assert len(rows) == 300
    assert [r["inbound_message_id"] for r in rows] == [e.message_id for e in events]
    assert [r["inbound_type"] for r in rows] == [e.type for e in events]
    assert [r["account_id"] for r in rows] == [e.account_id for e in events]
    exit_row, event_row = rows[0], rows[1]
    assert dict(exit_row) | {"id": None, "decided_at": None} == {
        "id": None,
        "account_id": events[0].account_id,
        "inbound_message_id": events[0].message_id,
        "inbound_type": events[0].type,
        "enrollment_id": view.enrollment_id,
        "record_type": "contact",
        "record_id": "c-1",
        "trigger": "replied",
        "matched_by": "address",
        "decision": "exit",
        "reason": "replied",
        "why": "replied (matched by address)",
        "exit_message_id": exit_message_id(
            events[0].account_id, events[0].message_id, view.enrollment_id
        ),
        "decided_at": None,
        "resume_at": None,
    }
    assert (event_row["enrollment_id"], event_row["decision"]) == (None, "ignored")
