"""``offramp``: the operator CLI.

Every command is a message on a public topic, so the CLI needs only Kafka, except
``quarantine``, which reads the services' outbox quarantines in PostgreSQL, and ``sends
queue``, which reads messaging's send queue there. Settings come
from ``KAFKA_BOOTSTRAP_SERVERS``, ``OFFRAMP_TOPIC_NAMESPACE`` and ``DATABASE_URL``; in a
checkout with the local system up (``make run``) they are found automatically (from the
``run.env`` that ``run.sh`` writes, else from the local infrastructure).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from shared.cli_common import CliError, bootstrap, shorten
from shared.cli_deadletters import (
    cmd_deadletters_list,
    cmd_deadletters_replay,
    deadletter_parsers,
)
from shared.cli_exclusions import cmd_exclusions_upload, exclusion_parsers
from shared.cli_lifecycle import LIFECYCLE_BUILDERS, lifecycle_parsers
from shared.cli_quarantine import QUARANTINE_COMMANDS, quarantine_parsers
from shared.cli_sends import cmd_sends_queue, sends_parsers
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
from shared.contracts.topics import TOPICS
from shared.contracts.workflow import WorkflowDefinition
from shared.demo import run_demo
from shared.runenv import RunEnv, probe, run_env_path
from shared.smtp_sink import serve


def _actor(args: argparse.Namespace) -> Actor:
    return (
        Actor(kind=ActorKind.USER, id=args.user)
        if args.user
        else Actor(kind=ActorKind.API, id="cli")
    )


def _record(args: argparse.Namespace) -> RecordRef:
    return RecordRef(type=RecordType(args.record_type), id=args.record_id)


async def _send(messages: Sequence[Message]) -> None:
    servers, namespace = bootstrap()
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
        ContactDetails(email=args.email, phone=args.phone, company_domain=args.company_domain)
        if args.email or args.phone
        else None
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
    servers, namespace = bootstrap()
    async with OfframpClient(servers, namespace) as client:
        async for document in client.follow(args.topic, from_beginning=args.from_beginning):
            print(json.dumps(document))


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
        print(f"{service:<18}{'ready' if ok else 'NOT READY'}  {url}  {shorten(said, 60)}")
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
    p.add_argument("--phone", help="the contact's mobile number for SMS steps (E.164)")
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
    lifecycle_parsers(command, account)
    p = command("publish", "validate a JSON event or command against its topic and publish it")
    p.add_argument("topic")
    p.add_argument("file")
    p = command("tail", "print a topic's messages as they arrive")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true")
    command("topics", "list every topic and the message types it carries")
    command("demo", "play the skeleton flow against a running system (make run)")
    command("status", "where the local `make run` listens and whether each service is ready")
    deadletter_parsers(command("deadletters", "list and replay dead letters"))
    exclusion_parsers(command("exclusions", "upload exclusion lists (CSV) to rules or bulk exits"))
    quarantine_parsers(
        command("quarantine", "list, release or drop outbox rows the relay could not publish")
    )
    sends_parsers(command("sends", "the send queue per sender and its send limit's usage"))
    p = command("smtp-sink", "a local SMTP server that prints every email it receives")
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept mail from containers")
    return parser


BUILDERS = {
    "apply": cmd_apply,
    "enroll": cmd_enroll,
    "exit": cmd_exit,
    "bulk-exit": cmd_bulk_exit,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "publish": cmd_publish,
    **LIFECYCLE_BUILDERS,
}


def _database_command(
    args: argparse.Namespace,
) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]] | None:
    """The commands that read PostgreSQL: ``quarantine`` and ``sends``."""
    if args.command == "quarantine":
        return QUARANTINE_COMMANDS[args.quarantine_command]
    if args.command == "sends":
        return cmd_sends_queue
    return None


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
            asyncio.run(run_demo(*bootstrap(), running=RunEnv.load()))
        elif args.command == "status":
            return cmd_status(args)
        elif args.command == "deadletters" and args.deadletters_command == "list":
            return asyncio.run(cmd_deadletters_list(args))
        elif args.command == "deadletters":
            return asyncio.run(cmd_deadletters_replay(args))
        elif args.command == "exclusions":
            return cmd_exclusions_upload(args)
        elif (database_command := _database_command(args)) is not None:
            return asyncio.run(database_command(args))
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
