"""The messaging store under contract test, fake or PostgreSQL, with probes of what the
port does not return (a send's status, attempts, last error, due time; its failure kind,
budget clock and lease; its grant): the fake's rows, or a SELECT on ``sends``."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg

from services.messaging.domain import Send, SendKey
from services.messaging.ports import MessagingStore
from services.messaging.repository import PostgresMessagingStore
from shared.contracts import utc_now
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.support.fakes.messaging import FakeMessagingStore


class SendState(NamedTuple):
    status: str
    cancel_reason: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime


class SendLease(NamedTuple):
    failure_kind: str | None
    first_failed_at: datetime | None
    attempt_id: uuid.UUID | None
    claimed_until: datetime | None


class SendGrant(NamedTuple):
    dispatch_id: uuid.UUID | None
    lease_until: datetime | None
    renewal_asked_for: datetime | None


@dataclass
class Subject:
    store: MessagingStore
    sends: Callable[[], Awaitable[dict[SendKey, SendState]]]
    """Every send as the store holds it (parked ones due at the time they were parked)."""
    leases: Callable[[], Awaitable[dict[SendKey, SendLease]]]
    """Every send's failure kind, budget clock, attempt and lease."""
    grants: Callable[[], Awaitable[dict[SendKey, SendGrant]]]
    """Every send's grant, and the lapsed lease whose renewal was asked for."""


def _fake(store: FakeMessagingStore) -> Subject:
    async def sends() -> dict[SendKey, SendState]:
        return {
            key: SendState(
                row.status,
                row.cancel_reason.value if row.cancel_reason else None,
                row.send.attempts,
                row.last_error,
                row.next_attempt_at,
            )
            for key, row in store.sends.items()
        } | {
            key: SendState(
                row.status,
                row.cancel_reason.value if row.cancel_reason else None,
                0,
                row.last_error,
                row.parked.parked_at,
            )
            for key, row in store.parked.items()
        }

    async def leases() -> dict[SendKey, SendLease]:
        return {
            key: SendLease(
                row.failure_kind.value if row.failure_kind else None,
                row.send.first_failed_at,
                row.send.attempt_id,
                row.claimed_until,
            )
            for key, row in store.sends.items()
        } | {
            key: SendLease(row.failure_kind.value if row.failure_kind else None, None, None, None)
            for key, row in store.parked.items()
        }

    async def grants() -> dict[SendKey, SendGrant]:
        return {
            key: SendGrant(row.send.dispatch_id, row.send.lease_until, row.renewal_asked_for)
            for key, row in store.sends.items()
        } | {
            key: SendGrant(row.parked.dispatch_id, row.parked.lease_until, None)
            for key, row in store.parked.items()
        }

    return Subject(store, sends, leases, grants)


def _postgres(conn: asyncpg.Connection) -> Subject:
    async def sends() -> dict[SendKey, SendState]:
        rows = await conn.fetch(
            """SELECT account_id, enrollment_id, step_index, status, cancel_reason, attempts,
                      last_error, next_attempt_at FROM sends"""
        )
        return {
            (r["account_id"], r["enrollment_id"], r["step_index"]): SendState(
                r["status"],
                r["cancel_reason"],
                r["attempts"],
                r["last_error"],
                r["next_attempt_at"],
            )
            for r in rows
        }

    async def leases() -> dict[SendKey, SendLease]:
        rows = await conn.fetch(
            """SELECT account_id, enrollment_id, step_index, failure_kind, first_failed_at,
                      attempt_id, claimed_until FROM sends"""
        )
        return {
            (r["account_id"], r["enrollment_id"], r["step_index"]): SendLease(
                r["failure_kind"], r["first_failed_at"], r["attempt_id"], r["claimed_until"]
            )
            for r in rows
        }

    async def grants() -> dict[SendKey, SendGrant]:
        rows = await conn.fetch(
            """SELECT account_id, enrollment_id, step_index, dispatch_id, lease_until,
                      renewal_asked_for FROM sends"""
        )
        return {
            (r["account_id"], r["enrollment_id"], r["step_index"]): SendGrant(
                r["dispatch_id"], r["lease_until"], r["renewal_asked_for"]
            )
            for r in rows
        }

    return Subject(PostgresMessagingStore(conn), sends, leases, grants)


@contextlib.asynccontextmanager
async def messaging_subject(kind: str, test_env: SessionEnv) -> AsyncIterator[Subject]:
    """The fake (``kind`` "fake") or PostgreSQL store on a fresh schema."""
    if kind == "fake":
        yield _fake(FakeMessagingStore())
        return
    async with migrated_schema(test_env, "messaging") as conn:
        yield _postgres(conn)


async def hand_over(repo: MessagingStore, claimed: Send, *, lease_s: float = 60) -> Send:
    """``claimed`` handed to a new attempt, as a claim does: the attempt to record."""
    attempt = replace(claimed, attempt_id=uuid.uuid4())
    await repo.mark_sending([attempt], until=utc_now() + timedelta(seconds=lease_s))
    return attempt


async def statuses(subject: Subject) -> dict[uuid.UUID, tuple[str, str | None]]:
    return {k[1]: (s.status, s.cancel_reason) for k, s in (await subject.sends()).items()}
