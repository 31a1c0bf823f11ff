"""``offramp quarantine``: list, release or drop the outbox rows a relay quarantined.

The only CLI commands that read PostgreSQL (each service's own schema), not Kafka.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC

import asyncpg

from shared import quarantine
from shared.cli_common import CliError, local_setting, shorten, table


def _database_url() -> str:
    url = local_setting("DATABASE_URL")
    if url is None:
        raise CliError("set DATABASE_URL (or start the local system with `make run`)")
    return url


def _schemas(services: Sequence[str] | None) -> list[str]:
    try:
        return [quarantine.schema_of(s) for s in services or quarantine.SERVICE_SCHEMAS]
    except ValueError as exc:
        raise CliError(str(exc)) from exc


async def _connect() -> asyncpg.Connection:
    url = _database_url()
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CliError(f"cannot reach PostgreSQL: {exc}") from exc


QUARANTINE_HEADER = [
    "service",
    "id",
    "quarantined at (UTC)",
    "topic",
    "key",
    "size",
    "attempts",
    "reason",
]


def _quarantined_row(row: quarantine.QuarantinedRow) -> list[str]:
    return [
        row.schema,
        str(row.id),
        row.quarantined_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        row.topic,
        shorten(row.key, 40),
        f"{len(row.value)} B",
        str(row.attempts),
        shorten(row.reason, 60),
    ]


async def cmd_quarantine_list(args: argparse.Namespace) -> int:
    schemas = _schemas(args.service)
    conn = await _connect()
    try:
        listings = await quarantine.list_quarantined(conn, schemas)
    finally:
        await conn.close()
    rows = [row for listing in listings for row in listing.rows]
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json()))
    elif rows:
        print(table([QUARANTINE_HEADER, *(_quarantined_row(row) for row in rows)]))
        print()
    counts = sys.stderr if args.json else sys.stdout
    for listing in listings:
        if listing.state is quarantine.SchemaState.READY:
            print(f"{listing.schema}: {len(listing.rows)} quarantined row(s)", file=counts)
        else:
            print(f"{listing.schema}: {listing.state.value}", file=counts)
    return 0


def _outcome_table(outcomes: Sequence[quarantine.Outcome], verb: str) -> None:
    rows = [["id", "outcome", "detail"]]
    for outcome in outcomes:
        if not outcome.done:
            rows.append([str(outcome.id), "not found", "no such quarantined row"])
        elif outcome.new_id is not None:
            rows.append([str(outcome.id), verb, f"outbox id {outcome.new_id}"])
        else:
            rows.append([str(outcome.id), verb, ""])
    if len(rows) > 1:
        print(table(rows))


async def cmd_quarantine_release(args: argparse.Namespace) -> int:
    if not args.id and not args.all:
        raise CliError("say what to release: --id (repeatable) or --all")
    if args.id and args.all:
        raise CliError("--id and --all select differently: give one of them")
    schema = _schemas([args.service])[0]
    conn = await _connect()
    try:
        outcomes = await quarantine.release(
            conn, schema, None if args.all else args.id, dry_run=args.dry_run
        )
    except quarantine.QuarantineError as exc:
        raise CliError(str(exc)) from exc
    finally:
        await conn.close()
    verb = "would release" if args.dry_run else "released"
    _outcome_table(outcomes, verb)
    done = sum(o.done for o in outcomes)
    missing = len(outcomes) - done
    print(f"{schema}: {verb} {done}, not found {missing}, of {len(outcomes)} selected")
    return 1 if missing else 0


async def cmd_quarantine_drop(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError("dropping deletes the rows for good: add --yes")
    schema = _schemas([args.service])[0]
    conn = await _connect()
    try:
        outcomes = await quarantine.drop(conn, schema, args.id)
    except quarantine.QuarantineError as exc:
        raise CliError(str(exc)) from exc
    finally:
        await conn.close()
    _outcome_table(outcomes, "dropped")
    done = sum(o.done for o in outcomes)
    missing = len(outcomes) - done
    print(f"{schema}: dropped {done}, not found {missing}, of {len(outcomes)} selected")
    return 1 if missing else 0


def quarantine_parsers(parent: argparse.ArgumentParser) -> None:
    sub = parent.add_subparsers(dest="quarantine_command", required=True)
    schemas = ", ".join(quarantine.SERVICE_SCHEMAS)

    def ids(p: argparse.ArgumentParser, *, required: bool) -> None:
        p.add_argument(
            "--id",
            action="append",
            type=int,
            required=required,
            metavar="ID",
            help="the quarantined row's id (repeatable)",
        )

    text = "print each service's quarantined outbox rows, oldest first, and their count"
    p = sub.add_parser("list", help=text, description=text)
    p.add_argument(
        "--service",
        action="append",
        metavar="SERVICE",
        help=f"a service schema ({schemas}); repeatable; default: all four",
    )
    p.add_argument("--json", action="store_true", help="one row per line, whole")
    text = (
        "move quarantined rows back to the service's outbox (new ids, attempts 0), once"
        " the cause is fixed"
    )
    p = sub.add_parser("release", help=text, description=text)
    p.add_argument("--service", required=True, help=f"the service schema ({schemas})")
    ids(p, required=False)
    p.add_argument("--all", action="store_true", help="every quarantined row of the service")
    p.add_argument("--dry-run", action="store_true", help="show what would be released")
    text = "delete quarantined rows that must never be published"
    p = sub.add_parser("drop", help=text, description=text)
    p.add_argument("--service", required=True, help=f"the service schema ({schemas})")
    ids(p, required=True)
    p.add_argument("--yes", action="store_true", help="really delete them")


QUARANTINE_COMMANDS = {
    "list": cmd_quarantine_list,
    "release": cmd_quarantine_release,
    "drop": cmd_quarantine_drop,
}
