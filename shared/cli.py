"""``offramp``: the operator CLI.

Every command is a message on a public topic, so the CLI needs only Kafka, except
``quarantine``, which reads the services' outbox quarantines in PostgreSQL. Settings come
from ``KAFKA_BOOTSTRAP_SERVERS``, ``OFFRAMP_TOPIC_NAMESPACE`` and ``DATABASE_URL``; in a
checkout with the local system up (``make run``) they are found automatically (from the
``run.env`` that ``run.sh`` writes, else from the local infrastructure).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg

from shared import deadletters, quarantine
from shared.client import OfframpClient
from shared.contracts import (
    MESSAGES_BY_TOPIC,
    Actor,
    ActorKind,
    InvalidMessageError,
    Message,
    RecordRef,
    RecordType,
    UnknownType,
    decode,
    utc_now,
)
from shared.contracts.commands import (
    ApplyWorkflow,
    ApplyWorkflowPayload,
    ContactDetails,
    Enroll,
    EnrollPayload,
    Exit,
    ExitPayload,
    ExitReason,
    ExitSource,
    Pause,
    PausePayload,
    Resume,
    ResumePayload,
)
from shared.contracts.events import DeadLettered
from shared.contracts.topics import TOPICS
from shared.contracts.workflow import WorkflowDefinition
from shared.demo import run_demo
from shared.runenv import RunEnv, probe, run_env_path
from shared.smtp_sink import serve

REPO = Path(__file__).resolve().parents[1]


class CliError(Exception):
    """A usage or input problem, printed without a traceback."""


def _local_setting(name: str) -> str | None:
    """``name`` as the environment, a running ``make run`` (run.env) or the local
    infrastructure (``deploy/local/infra.sh env``) gives it, in that order."""
    value = os.environ.get(f"OFFRAMP_{name}") or os.environ.get(name)
    if value:
        return value
    running = RunEnv.load()
    if running is not None and running.values.get(name):
        return running.values[name]
    script = REPO / "deploy" / "local" / "infra.sh"
    if script.exists():
        result = subprocess.run(  # noqa: S603 - the project's own script, bash from PATH
            ["bash", str(script), "env"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        for line in result.stdout.splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1]
    return None


def _bootstrap() -> tuple[str, str]:
    servers = _local_setting("KAFKA_BOOTSTRAP_SERVERS")
    if servers is None:
        raise CliError("set KAFKA_BOOTSTRAP_SERVERS (or start the local system with `make run`)")
    namespace = os.environ.get("OFFRAMP_TOPIC_NAMESPACE")
    if namespace is None:
        # A running `make run` names its namespace, unless the environment chose the broker.
        running = RunEnv.load()
        from_run = running is not None and running.kafka == servers
        namespace = running.namespace if running is not None and from_run else ""
    return servers, namespace


def _actor(args: argparse.Namespace) -> Actor:
    return (
        Actor(kind=ActorKind.USER, id=args.user)
        if args.user
        else Actor(kind=ActorKind.API, id="cli")
    )


def _record(args: argparse.Namespace) -> RecordRef:
    return RecordRef(type=RecordType(args.record_type), id=args.record_id)


async def _send(messages: Sequence[Message]) -> None:
    servers, namespace = _bootstrap()
    async with OfframpClient(servers, namespace) as client:
        for message in messages:
            await client.publish(message)
            print(f"published {message.type} {message.message_id} key={message.partition_key()}")


def cmd_apply(args: argparse.Namespace) -> list[Message]:
    definition = WorkflowDefinition.model_validate_json(Path(args.file).read_text())
    payload = ApplyWorkflowPayload(actor=_actor(args), definition=definition)
    return [ApplyWorkflow.create(account_id=args.account, payload=payload)]


def cmd_enroll(args: argparse.Namespace) -> list[Message]:
    contact = (
        ContactDetails(email=args.email, company_domain=args.company_domain) if args.email else None
    )
    payload = EnrollPayload(
        workflow_id=args.workflow, record=_record(args), contact=contact, actor=_actor(args)
    )
    return [Enroll.create(account_id=args.account, payload=payload)]


def _exit(account: str, record: RecordRef, args: argparse.Namespace, source: ExitSource) -> Exit:
    return Exit.create(
        account_id=account,
        payload=ExitPayload(
            record=record,
            workflow_id=args.workflow,
            reason=ExitReason(args.reason),
            source=source,
            actor=_actor(args),
        ),
    )


def cmd_exit(args: argparse.Namespace) -> list[Message]:
    return [_exit(args.account, _record(args), args, ExitSource.MANUAL)]


def cmd_bulk_exit(args: argparse.Namespace) -> list[Message]:
    """CSV with columns record_type,record_id: one exit command per row."""
    with Path(args.file).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"record_type", "record_id"} - set(rows[0] if rows else {})
    if missing:
        raise CliError(f"{args.file}: the CSV needs the columns record_type,record_id")
    return [
        _exit(
            args.account,
            RecordRef(type=RecordType(row["record_type"]), id=row["record_id"]),
            args,
            ExitSource.BULK,
        )
        for row in rows
    ]


def cmd_pause(args: argparse.Namespace) -> list[Message]:
    payload = PausePayload(
        record=_record(args), workflow_id=args.workflow, actor=_actor(args), reason="manual"
    )
    return [Pause.create(account_id=args.account, payload=payload)]


def cmd_resume(args: argparse.Namespace) -> list[Message]:
    payload = ResumePayload(record=_record(args), workflow_id=args.workflow, actor=_actor(args))
    return [Resume.create(account_id=args.account, payload=payload)]


def load_event(topic: str, document: dict[str, Any]) -> Message:
    """Validate a JSON document against ``topic``'s contracts, filling id and time if absent."""
    document = {
        "message_id": str(uuid.uuid4()),
        "occurred_at": utc_now().isoformat(),
        **{k: v for k, v in document.items() if v is not None},
    }
    try:
        decoded = decode(json.dumps(document).encode(), topic=topic)
    except InvalidMessageError as exc:
        raise CliError(f"not a valid message for {topic}: {exc.reason}") from exc
    if isinstance(decoded, UnknownType):
        known = ", ".join(m.TYPE for m in MESSAGES_BY_TOPIC.get(topic, ()))
        raise CliError(f"{topic} carries no type {decoded.type!r}; it carries: {known}")
    return decoded


def cmd_publish(args: argparse.Namespace) -> list[Message]:
    if args.topic not in MESSAGES_BY_TOPIC:
        raise CliError(f"unknown topic {args.topic}; see `offramp topics`")
    return [load_event(args.topic, json.loads(Path(args.file).read_text()))]


async def cmd_tail(args: argparse.Namespace) -> None:
    servers, namespace = _bootstrap()
    async with OfframpClient(servers, namespace) as client:
        async for document in client.follow(args.topic, from_beginning=args.from_beginning):
            print(json.dumps(document))


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


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
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
        _shorten(payload.reason, 60),
    ]


LETTER_HEADER = ["time (UTC)", "id", "consumer", "account", "source", "type", "kind", "reason"]


async def cmd_deadletters_list(args: argparse.Namespace) -> int:
    servers, namespace = _bootstrap()
    async with OfframpClient(servers, namespace) as client:
        listing = await deadletters.list_dead_letters(client, _selection(args))
    if args.json:
        for letter in listing.letters:
            print(letter.model_dump_json())
    elif listing.letters:
        print(_table([LETTER_HEADER, *(_letter_row(letter) for letter in listing.letters)]))
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
    servers, namespace = _bootstrap()
    async with OfframpClient(servers, namespace) as client:
        listing = await deadletters.list_dead_letters(client, selection)
        results = await deadletters.replay(client, listing.letters, dry_run=args.dry_run)
    missing = sorted(str(i) for i in selection.ids - {r.dead_letter_id for r in results})
    rows = [["id", "outcome", "detail"]]
    rows += [[str(r.dead_letter_id), r.outcome.value, r.detail] for r in results]
    rows += [[i, deadletters.Outcome.SKIPPED.value, "no such dead letter"] for i in missing]
    if len(rows) > 1:
        print(_table(rows))
    done = sum(r.outcome is not deadletters.Outcome.SKIPPED for r in results)
    skipped = len(rows) - 1 - done
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {done}, skipped {skipped}, of {len(rows) - 1} selected")
    return 1 if skipped else 0


def _database_url() -> str:
    url = _local_setting("DATABASE_URL")
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
        _shorten(row.key, 40),
        f"{len(row.value)} B",
        str(row.attempts),
        _shorten(row.reason, 60),
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
        print(_table([QUARANTINE_HEADER, *(_quarantined_row(row) for row in rows)]))
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
        print(_table(rows))


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


def cmd_status(_args: argparse.Namespace) -> int:
    running = RunEnv.load()
    if running is None:
        print(f"no `make run` is up from this checkout ({run_env_path() / 'run.env'} is absent)")
        return 1
    print(f"Kafka       {running.kafka or '-'}")
    print(f"PostgreSQL  {running.values.get('DATABASE_URL', '-')}")
    print(f"SMTP sink   127.0.0.1:{running.smtp_port or '-'}")
    ready = True
    for service, url in running.health_urls().items():
        ok, said = probe(url)
        ready = ready and ok
        print(f"{service:<18}{'ready' if ok else 'NOT READY'}  {url}  {_shorten(said, 60)}")
    return 0 if ready else 1


def cmd_topics(_args: argparse.Namespace) -> None:
    for spec in TOPICS:
        types = ", ".join(m.TYPE for m in MESSAGES_BY_TOPIC[spec.name])
        print(f"{spec.name}  ({spec.partitions} partitions, by {spec.producer})\n    {types}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offramp", description=__doc__.split("\n")[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    def account(p: argparse.ArgumentParser) -> None:
        p.add_argument("--account", required=True, help="the account (tenant) id")
        p.add_argument("--user", help="the user acting (default: the API actor 'cli')")

    def record(p: argparse.ArgumentParser) -> None:
        p.add_argument("--record-type", default="contact", choices=[t.value for t in RecordType])
        p.add_argument("--record-id", required=True)

    p = command("apply", "apply a workflow definition (JSON file); a changed one adds a version")
    account(p)
    p.add_argument("file")
    p = command("enroll", "enroll one record in a workflow")
    account(p)
    record(p)
    p.add_argument("--workflow", required=True)
    p.add_argument("--email", help="the contact's email address")
    p.add_argument("--company-domain")
    for name, text in (
        ("exit", "take one record out of one workflow (or, without --workflow, all of them)"),
        ("pause", "pause one record's enrollment(s)"),
        ("resume", "resume one record's paused enrollment(s)"),
    ):
        p = command(name, text)
        account(p)
        record(p)
        p.add_argument("--workflow")
        if name == "exit":
            p.add_argument("--reason", default="manual", choices=[r.value for r in ExitReason])
    p = command("bulk-exit", "take the records of a CSV (record_type,record_id) out of a workflow")
    account(p)
    p.add_argument("file")
    p.add_argument("--workflow")
    p.add_argument("--reason", default="manual", choices=[r.value for r in ExitReason])
    p = command("publish", "validate a JSON event or command against its topic and publish it")
    p.add_argument("topic")
    p.add_argument("file")
    p = command("tail", "print a topic's messages as they arrive")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true")
    command("topics", "list every topic and the message types it carries")
    command("demo", "play the skeleton flow against a running system (make run)")
    command("status", "where the local `make run` listens and whether each service is ready")
    _deadletter_parsers(command("deadletters", "list and replay dead letters"))
    _quarantine_parsers(
        command("quarantine", "list, release or drop outbox rows the relay could not publish")
    )
    p = command("smtp-sink", "a local SMTP server that prints every email it receives")
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept mail from containers")
    return parser


def _deadletter_parsers(parent: argparse.ArgumentParser) -> None:
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


def _quarantine_parsers(parent: argparse.ArgumentParser) -> None:
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


BUILDERS = {
    "apply": cmd_apply,
    "enroll": cmd_enroll,
    "exit": cmd_exit,
    "bulk-exit": cmd_bulk_exit,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "publish": cmd_publish,
}


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - a return per command
    args = _parser().parse_args(argv)
    try:
        if args.command in BUILDERS:
            asyncio.run(_send(BUILDERS[args.command](args)))
        elif args.command == "tail":
            asyncio.run(cmd_tail(args))
        elif args.command == "topics":
            cmd_topics(args)
        elif args.command == "demo":
            asyncio.run(run_demo(*_bootstrap(), running=RunEnv.load()))
        elif args.command == "status":
            return cmd_status(args)
        elif args.command == "deadletters" and args.deadletters_command == "list":
            return asyncio.run(cmd_deadletters_list(args))
        elif args.command == "deadletters":
            return asyncio.run(cmd_deadletters_replay(args))
        elif args.command == "quarantine":
            return asyncio.run(QUARANTINE_COMMANDS[args.quarantine_command](args))
        elif args.command == "smtp-sink":
            asyncio.run(serve(args.host, args.port))
    except CliError as exc:
        print(f"offramp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
