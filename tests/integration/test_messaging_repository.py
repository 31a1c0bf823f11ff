"""Messaging's SQL on the real database: whole runs of projection changes and due steps in
one statement each, and the share lock that makes the send-time re-check hold when the
consumer locks many enrollments at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from services.messaging.domain import EnrollmentStatus, EnrollmentView, Send, WorkflowStep
from services.messaging.ports import CancelledSend, FailedAttempt, SentSend
from services.messaging.repository import MessagingRepository
from shared.contracts import RecordRef, RecordType, utc_now
from shared.contracts.events import CancelReason
from shared.contracts.inbound import Channel
from shared.migrations import migrate
from tests.conftest import SessionEnv
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "messaging" / "migrations"
ACCOUNT = "acc"
CONTACT = RecordRef(type=RecordType.CONTACT, id="c-1")


@pytest.fixture
async def conn(test_env: SessionEnv) -> AsyncIterator[asyncpg.Connection]:
    schema = f"msg_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(
        test_env.database_url, server_settings={"search_path": schema}
    )
    await migrate(connection, schema=schema, service_dir=MIGRATIONS)
    yield connection
    await connection.execute(f"DROP SCHEMA {schema} CASCADE")
    await connection.close()


@pytest.fixture
async def other(
    conn: asyncpg.Connection, test_env: SessionEnv
) -> AsyncIterator[asyncpg.Connection]:
    """A second connection to the same schema (another transaction)."""
    schema = await conn.fetchval("SELECT current_schema()")
    connection = await asyncpg.connect(
        test_env.database_url, server_settings={"search_path": schema}
    )
    yield connection
    await connection.close()


def view(
    enrollment_id: uuid.UUID,
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE,
    *,
    email: str | None = "ada@example.com",
    workflow_id: str = "wf",
    account: str = ACCOUNT,
) -> EnrollmentView:
    return EnrollmentView(
        enrollment_id=enrollment_id,
        account_id=account,
        workflow_id=workflow_id,
        workflow_version=1,
        record=CONTACT,
        status=status,
        recipient_email=email,
    )


def wf_step(index: int, step_id: str, *, version: int = 1, account: str = ACCOUNT) -> WorkflowStep:
    return WorkflowStep(
        account_id=account,
        workflow_id="wf",
        version=version,
        step_index=index,
        step_id=step_id,
        channel=Channel.EMAIL,
        subject=None,
        body=f"body {step_id}",
        sender=None,
    )


def send(enrollment_id: uuid.UUID, step_index: int = 0, account: str = ACCOUNT) -> Send:
    return Send(
        enrollment_id=enrollment_id,
        step_index=step_index,
        account_id=account,
        workflow_id="wf",
        workflow_version=1,
        record=CONTACT,
        step_id=f"s{step_index}",
        channel=Channel.EMAIL,
        sender="from@example.com",
        subject="Hi",
        body="Hello",
        provider_message_id=f"<{enrollment_id}.{step_index}@test>",
        cause_message_id=uuid.uuid4(),
        correlation_id=None,
    )


async def statuses(conn: asyncpg.Connection) -> dict[uuid.UUID, tuple[str, str | None]]:
    rows = await conn.fetch("SELECT enrollment_id, status, cancel_reason FROM sends")
    return {r["enrollment_id"]: (r["status"], r["cancel_reason"]) for r in rows}


async def test_steps_of_several_versions_are_saved_and_found_at_once(
    conn: asyncpg.Connection,
) -> None:
    repo = MessagingRepository(conn)
    await repo.save_workflow_steps([wf_step(0, "a"), wf_step(1, "b"), wf_step(0, "c", version=2)])
    await repo.save_workflow_steps([wf_step(0, "replayed")])  # a version never changes

    found = await repo.workflow_steps(
        {(ACCOUNT, "wf", 1, 0), (ACCOUNT, "wf", 2, 0), (ACCOUNT, "wf", 3, 0), ("x", "wf", 1, 1)}
    )

    assert found == {
        (ACCOUNT, "wf", 1, 0): wf_step(0, "a"),
        (ACCOUNT, "wf", 2, 0): wf_step(0, "c", version=2),
    }
    assert await repo.workflow_steps(set()) == {}


async def test_one_insert_queues_new_and_paused_sends_and_leaves_the_others(
    conn: asyncpg.Connection,
) -> None:
    repo = MessagingRepository(conn)
    new, paused, exited, sent = (uuid.uuid4() for _ in range(4))
    earlier = utc_now() - timedelta(minutes=5)
    await repo.add_pending_sends([send(paused), send(exited), send(sent)], now=earlier)
    await repo.mark_cancelled(
        [
            CancelledSend(ACCOUNT, paused, 0, CancelReason.ENROLLMENT_PAUSED),
            CancelledSend(ACCOUNT, exited, 0, CancelReason.ENROLLMENT_EXITED),
        ]
    )
    await conn.execute("UPDATE sends SET status = 'sent' WHERE enrollment_id = $1", sent)

    now = utc_now()
    queued = await repo.add_pending_sends(
        [send(new), send(paused), send(exited), send(sent)], now=now
    )

    assert queued == {(ACCOUNT, new, 0), (ACCOUNT, paused, 0)}
    assert await statuses(conn) == {
        new: ("pending", None),
        paused: ("pending", None),
        exited: ("cancelled", "enrollment_exited"),
        sent: ("sent", None),
    }
    due = await conn.fetch("SELECT enrollment_id, next_attempt_at FROM sends")
    assert {r["enrollment_id"] for r in due if r["next_attempt_at"] == now} == {new, paused}


async def test_the_projection_is_locked_and_saved_for_many_enrollments_at_once(
    conn: asyncpg.Connection,
) -> None:
    repo = MessagingRepository(conn)
    known, new, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await repo.save_enrollments([view(known)])

    async with conn.transaction():
        found = await repo.enrollments_for_update([(ACCOUNT, known), (ACCOUNT, unknown)])
        assert found == {(ACCOUNT, known): view(known)}
        await repo.save_enrollments(
            [
                # Only status and recipient change on an existing row.
                view(known, EnrollmentStatus.EXITED, email=None, workflow_id="changed"),
                view(new, EnrollmentStatus.PAUSED),
            ]
        )

    after = await repo.enrollments_for_update([(ACCOUNT, known), (ACCOUNT, new)])
    assert after == {
        (ACCOUNT, known): view(known, EnrollmentStatus.EXITED, email=None),
        (ACCOUNT, new): view(new, EnrollmentStatus.PAUSED),
    }


async def test_sends_cancelled_for_a_pause_are_requeued_for_many_enrollments(
    conn: asyncpg.Connection,
) -> None:
    repo = MessagingRepository(conn)
    first, second, exited = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    sends = [send(first, 0), send(first, 1), send(second), send(exited)]
    await repo.add_pending_sends(sends, now=utc_now())
    await repo.mark_cancelled(
        [CancelledSend(*s.key, CancelReason.ENROLLMENT_PAUSED) for s in sends[:3]]
        + [CancelledSend(ACCOUNT, exited, 0, CancelReason.ENROLLMENT_EXITED)]
    )

    keys = [(ACCOUNT, first), (ACCOUNT, second), (ACCOUNT, exited)]
    assert await repo.rearm_paused_sends(keys, now=utc_now()) == 3
    assert await repo.rearm_paused_sends([], now=utc_now()) == 0
    assert (await statuses(conn))[exited] == ("cancelled", "enrollment_exited")


async def waiting_on_a_lock(test_env: SessionEnv, pid: int) -> bool:
    """Whether backend ``pid`` is blocked on a lock (asked from a fresh connection)."""
    probe = await asyncpg.connect(test_env.database_url)
    try:
        kind = await probe.fetchval(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
        )
    finally:
        await probe.close()
    return bool(kind == "Lock")


async def test_an_exit_applied_during_a_send_waits_for_it_and_the_next_claim_sees_it(
    conn: asyncpg.Connection, other: asyncpg.Connection, test_env: SessionEnv
) -> None:
    """The send-time re-check holds with the run's one lock of many projection rows."""
    sending, bystander = uuid.uuid4(), uuid.uuid4()
    sender, consumer = MessagingRepository(conn), MessagingRepository(other)
    await sender.save_enrollments([view(sending), view(bystander)])
    await sender.add_pending_sends([send(sending)], now=utc_now() - timedelta(seconds=1))

    sender_tx = conn.transaction()
    await sender_tx.start()
    [claimed] = await sender.claim_due(now=utc_now(), limit=10)
    assert claimed.enrollment_status is EnrollmentStatus.ACTIVE

    async def apply_exit() -> None:
        async with other.transaction():
            await consumer.enrollments_for_update([(ACCOUNT, bystander), (ACCOUNT, sending)])
            await consumer.save_enrollments([view(sending, EnrollmentStatus.EXITED)])

    exit_applied = asyncio.create_task(apply_exit())
    # The exit blocks on the sender's lock rather than racing past it.
    assert await eventually(
        lambda: waiting_on_a_lock(test_env, other.get_server_pid()),
        what="the exit to wait on the sender's lock",
    )
    assert not exit_applied.done()
    await sender_tx.commit()
    await asyncio.wait_for(exit_applied, timeout=5)

    async with conn.transaction():
        [again] = await sender.claim_due(now=utc_now(), limit=10)
    assert again.enrollment_status is EnrollmentStatus.EXITED


async def test_a_claim_skips_a_send_whose_enrollment_the_consumer_holds(
    conn: asyncpg.Connection, other: asyncpg.Connection
) -> None:
    held, free = uuid.uuid4(), uuid.uuid4()
    sender, consumer = MessagingRepository(conn), MessagingRepository(other)
    await sender.save_enrollments([view(held), view(free)])
    await sender.add_pending_sends([send(held), send(free)], now=utc_now() - timedelta(seconds=1))

    async with other.transaction():
        await consumer.enrollments_for_update([(ACCOUNT, held)])
        async with conn.transaction():
            claimed = await sender.claim_due(now=utc_now(), limit=10)

    assert [c.send.enrollment_id for c in claimed] == [free]


async def test_two_accounts_with_the_same_ids_stay_apart(conn: asyncpg.Connection) -> None:
    """Same enrollment id, workflow id, step and provider Message-ID in two accounts."""
    repo, other, shared_id = MessagingRepository(conn), "other-acc", uuid.uuid4()
    await repo.save_workflow_steps([wf_step(0, "ours"), wf_step(0, "theirs", account=other)])
    await repo.save_enrollments([view(shared_id), view(shared_id, account=other, email="b@x")])
    earlier = utc_now() - timedelta(seconds=1)
    queued = await repo.add_pending_sends(
        [send(shared_id), send(shared_id, account=other)], now=earlier
    )
    assert queued == {(ACCOUNT, shared_id, 0), (other, shared_id, 0)}

    steps = await repo.workflow_steps({(ACCOUNT, "wf", 1, 0), (other, "wf", 1, 0)})
    assert steps[(other, "wf", 1, 0)].step_id == "theirs"
    assert steps[(ACCOUNT, "wf", 1, 0)].step_id == "ours"
    # Theirs exits and its send is cancelled for a pause, then re-armed: ours never moves.
    async with conn.transaction():
        locked = await repo.enrollments_for_update([(other, shared_id)])
        assert list(locked) == [(other, shared_id)]
        await repo.save_enrollments([view(shared_id, EnrollmentStatus.EXITED, account=other)])
        await repo.mark_cancelled(
            [CancelledSend(other, shared_id, 0, CancelReason.ENROLLMENT_PAUSED)]
        )
    assert await repo.rearm_paused_sends([(ACCOUNT, shared_id)], now=earlier) == 0
    async with conn.transaction():
        claimed = await repo.claim_due(now=utc_now(), limit=10)
    assert [(c.send.account_id, c.enrollment_status, c.recipient_email) for c in claimed] == [
        (ACCOUNT, EnrollmentStatus.ACTIVE, "ada@example.com")
    ]
    await repo.mark_sent([SentSend(ACCOUNT, shared_id, 0, "ada@example.com", utc_now())])
    await repo.record_failures([FailedAttempt(other, shared_id, 0, "boom", None)])
    rows = await conn.fetch("SELECT account_id, status, attempts, last_error FROM sends")
    assert {r["account_id"]: (r["status"], r["attempts"], r["last_error"]) for r in rows} == {
        ACCOUNT: ("sent", 1, None),
        other: ("failed", 1, "boom"),
    }
    views = await repo.enrollments_for_update([(ACCOUNT, shared_id), (other, shared_id)])
    assert views[(ACCOUNT, shared_id)].status is EnrollmentStatus.ACTIVE
    assert views[(other, shared_id)].status is EnrollmentStatus.EXITED


async def test_an_orphan_is_a_send_whose_own_accounts_enrollment_is_missing(
    conn: asyncpg.Connection,
) -> None:
    repo, other, shared_id = MessagingRepository(conn), "other-acc", uuid.uuid4()
    await repo.save_enrollments([view(shared_id, account=other)])  # only theirs is projected
    await repo.add_pending_sends([send(shared_id)], now=utc_now())

    orphans = await repo.cancel_orphans(created_before=utc_now() + timedelta(seconds=1), limit=10)

    assert [(o.account_id, o.enrollment_id) for o in orphans] == [(ACCOUNT, shared_id)]
