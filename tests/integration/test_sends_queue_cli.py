"""``offramp sends queue`` on the real database: per account and sender, what waits, what
is due, the calls counted against the send limit in 24 hours and until when a full sender
waits (as a table, and as JSON lines)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from services.messaging.repository import PostgresMessagingStore
from shared.contracts import utc_now
from tests.conftest import SessionEnv
from tests.contract.conftest import migrated_schema
from tests.integration.test_quarantine_cli import offramp
from tests.support.builders.messaging_rows import ACCOUNT, send, view

pytestmark = pytest.mark.integration


async def test_the_queue_per_sender_shows_waiting_due_usage_and_full_until(
    test_env: SessionEnv,
) -> None:
    async with migrated_schema(test_env, "messaging") as conn:
        schema = await conn.fetchval("SELECT current_schema()")
        store, now = PostgresMessagingStore(conn), utc_now()
        due, later = send(uuid.uuid4()), send(uuid.uuid4())
        sender = (ACCOUNT, due.sender)
        await store.save_enrollments([view(due.enrollment_id), view(later.enrollment_id)])
        await store.add_pending_sends([due], now=now - timedelta(minutes=1))
        await store.add_pending_sends([later], now=now + timedelta(hours=1))
        await store.lock_senders({sender}, claimed=set(), now=now)
        full_until = now + timedelta(hours=23)
        await store.use_capacity([(sender, uuid.uuid4())], {sender: full_until}, now=now)

        code, out, err = await offramp(test_env.database_url, "sends", "queue", "--schema", schema)
        assert (code, err) == (0, "")
        assert ACCOUNT in out
        assert due.sender in out
        assert "1 sender(s), 2 send(s) waiting" in out

        code, out, _ = await offramp(
            test_env.database_url, "sends", "queue", "--schema", schema, "--json"
        )
        assert code == 0
        [line] = [json.loads(text) for text in out.splitlines()]
        assert line["account_id"] == ACCOUNT
        assert (line["sender"], line["waiting"], line["due"], line["used_24h"]) == (
            due.sender,
            2,
            1,
            1,
        )
        assert line["full_until"] == full_until.isoformat()

        code, out, _ = await offramp(
            test_env.database_url, "sends", "queue", "--schema", schema, "--account", "nobody"
        )
        assert (code, out.strip()) == (0, "0 sender(s), 0 send(s) waiting")
