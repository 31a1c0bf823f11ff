"""``offramp sends queue``: what waits to be sent, per account and sending mailbox or
number, and how much of its rolling 24-hour send limit each sender has used.

Reads messaging's schema in PostgreSQL (like ``quarantine``), through messaging's own
query (``services.messaging.send_limits_sql.sends_queue``): every replica's queue is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import asyncpg

from shared.cli_common import CliError, local_setting, shorten, table
from shared.contracts import utc_now

QUEUE_HEADER = [
    "account",
    "sender",
    "waiting",
    "due",
    "oldest due (UTC)",
    "used 24 h",
    "full until (UTC)",
]


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


async def cmd_sends_queue(args: argparse.Namespace) -> int:
    # messaging's query, imported here: the rest of the CLI needs none of messaging.
    from services.messaging.send_limits_sql import sends_queue  # noqa: PLC0415

    url = local_setting("DATABASE_URL")
    if url is None:
        raise CliError("set DATABASE_URL (or start the local system with `make run`)")
    try:
        conn = await asyncpg.connect(url, timeout=10, server_settings={"search_path": args.schema})
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CliError(f"cannot reach PostgreSQL: {exc}") from exc
    try:
        queues = await sends_queue(conn, now=utc_now())
    except asyncpg.UndefinedTableError as exc:
        raise CliError(
            f"schema {args.schema!r} has no send queue (messaging not migrated)"
        ) from exc
    finally:
        await conn.close()
    queues = [q for q in queues if args.account is None or q.account_id == args.account]
    if args.json:
        for q in queues:
            print(
                json.dumps(
                    {
                        "account_id": q.account_id,
                        "sender": q.sender,
                        "waiting": q.waiting,
                        "due": q.due,
                        "oldest_due_at": q.oldest_due_at.isoformat() if q.oldest_due_at else None,
                        "used_24h": q.used_24h,
                        "full_until": q.blocked_until.isoformat() if q.blocked_until else None,
                    }
                )
            )
        return 0
    rows = [
        [
            q.account_id,
            shorten(q.sender, 40),
            str(q.waiting),
            str(q.due),
            _when(q.oldest_due_at),
            str(q.used_24h),
            _when(q.blocked_until),
        ]
        for q in queues
    ]
    if rows:
        print(table([QUEUE_HEADER, *rows]))
    waiting = sum(q.waiting for q in queues)
    print(f"{len(queues)} sender(s), {waiting} send(s) waiting", file=sys.stdout)
    return 0


def sends_parsers(parent: argparse.ArgumentParser) -> None:
    sub = parent.add_subparsers(dest="sends_command", required=True)
    text = (
        "per account and sender: sends waiting (and already due), the oldest due, calls"
        " counted against the rolling 24-hour send limit, and until when a full sender waits"
    )
    p = sub.add_parser("queue", help=text, description=text)
    p.add_argument("--account", help="only this account's senders")
    p.add_argument("--schema", default="messaging", help="messaging's schema (default: messaging)")
    p.add_argument("--json", action="store_true", help="one sender per line, whole")
