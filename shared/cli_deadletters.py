"""``offramp deadletters``: list the dead-letter topic and replay its originals."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC

from shared import deadletters
from shared.cli_common import CliError, bootstrap, shorten, table
from shared.client import OfframpClient
from shared.contracts import utc_now
from shared.contracts.events import DeadLettered


def _selection(args: argparse.Namespace) -> deadletters.Selection:
    now = utc_now()
    try:
        since = deadletters.parse_time(args.since, now=now) if args.since else None
        until = deadletters.parse_time(args.until, now=now) if args.until else None
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    ids = frozenset(getattr(args, "id", None) or ())
    return deadletters.Selection(
        consumer=args.consumer,
        account=args.account,
        kind=args.kind,
        since=since,
        until=until,
        ids=ids,
    )


def _letter_row(letter: DeadLettered) -> list[str]:
    payload = letter.payload
    return [
        letter.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        str(letter.message_id),
        payload.consumer,
        letter.account_id,
        f"{payload.source_topic}[{payload.source_partition}]@{payload.source_offset}",
        payload.message_type or "-",
        payload.error_kind,
        shorten(payload.reason, 60),
    ]


LETTER_HEADER = ["time (UTC)", "id", "consumer", "account", "source", "type", "kind", "reason"]


async def cmd_deadletters_list(args: argparse.Namespace) -> int:
    servers, namespace = bootstrap()
    async with OfframpClient(servers, namespace) as client:
        listing = await deadletters.list_dead_letters(client, _selection(args))
    if args.json:
        for letter in listing.letters:
            print(letter.model_dump_json())
    elif listing.letters:
        print(table([LETTER_HEADER, *(_letter_row(letter) for letter in listing.letters)]))
    count = f"{len(listing.letters)} dead letter(s)"
    if listing.unreadable:
        count += f" ({listing.unreadable} record(s) on the topic were not readable dead letters)"
    print(count, file=sys.stderr if args.json else sys.stdout)
    return 0


async def cmd_deadletters_replay(args: argparse.Namespace) -> int:
    selection = _selection(args)
    if selection.is_empty and not args.all:
        raise CliError(
            "say what to replay: --id, a filter (--consumer, --account, --kind, --since,"
            " --until), or --all"
        )
    servers, namespace = bootstrap()
    async with OfframpClient(servers, namespace) as client:
        listing = await deadletters.list_dead_letters(client, selection)
        results = await deadletters.replay(client, listing.letters, dry_run=args.dry_run)
    missing = sorted(str(i) for i in selection.ids - {r.dead_letter_id for r in results})
    rows = [["id", "outcome", "detail"]]
    rows += [[str(r.dead_letter_id), r.outcome.value, r.detail] for r in results]
    rows += [[i, deadletters.Outcome.SKIPPED.value, "no such dead letter"] for i in missing]
    if len(rows) > 1:
        print(table(rows))
    done = sum(r.outcome is not deadletters.Outcome.SKIPPED for r in results)
    skipped = len(rows) - 1 - done
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {done}, skipped {skipped}, of {len(rows) - 1} selected")
    return 1 if skipped else 0


def deadletter_parsers(parent: argparse.ArgumentParser) -> None:
    sub = parent.add_subparsers(dest="deadletters_command", required=True)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--consumer", help="the consumer group that gave up, e.g. offramp-enrollment"
        )
        p.add_argument("--account", help="the account (tenant) id")
        p.add_argument(
            "--kind", help="the error kind: invalid_json, invalid_message, rejected, ..."
        )
        p.add_argument(
            "--since", help="dead-lettered at or after: ISO time or an age (30m, 2h, 7d)"
        )
        p.add_argument("--until", help="dead-lettered before: ISO time or an age")

    text = "print the dead letters that match, oldest first, and their count"
    p = sub.add_parser("list", help=text, description=text)
    filters(p)
    p.add_argument("--json", action="store_true", help="one dead letter per line, as stored")
    text = (
        "republish the originals of the selected dead letters to their source topics,"
        f" with the header {deadletters.REPLAY_HEADER}"
    )
    p = sub.add_parser("replay", help=text, description=text)
    filters(p)
    p.add_argument(
        "--id",
        action="append",
        type=uuid.UUID,
        metavar="DEAD_LETTER_ID",
        help="the dead letter's message_id (repeatable)",
    )
    p.add_argument("--all", action="store_true", help="every dead letter (the filters still apply)")
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; send nothing"
    )
