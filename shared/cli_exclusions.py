"""``offramp exclusions upload``: stream a CSV of emails, domains or company names to
enrollment as an exclusion list, then make it a rule, exit its matches, or both.

The file is read as a stream (any size), one chunk of ``--chunk-size`` entries per
``exclusion_list.chunk`` command, with a progress bar (``rich``) over the bytes read. A bad
row (empty, not an address or domain, a broken CSV line) is reported with its line number
and why; the good rows go on. Enrollment normalises and checks every entry again and
answers each chunk with ``exclusion_list.chunk_applied`` on ``offramp.exclusion.events.v1``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from shared.cli_common import CliError, bootstrap
from shared.client import OfframpClient
from shared.contracts import Actor, ActorKind, Message
from shared.contracts.exclusions import (
    Condition,
    ConditionGroup,
    ExclusionListChunk,
    ExclusionRuleDefinition,
    ExitListMatches,
    ListChunkPayload,
    ListExitPayload,
    ListKind,
    PutExclusionRule,
    PutRulePayload,
    RuleAction,
    RuleLevel,
)
from shared.domains import list_value

MAX_CHUNK = 5000
_FIELD_OF_KIND = {
    ListKind.EMAIL: "email",
    ListKind.DOMAIN: "domain",
    ListKind.COMPANY_NAME: "company_name",
}
_WHY = {
    ListKind.EMAIL: "not an email address",
    ListKind.DOMAIN: "not a domain name",
    ListKind.COMPANY_NAME: "no company name",
}


class _CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read (the progress bar's position)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    value: str
    reason: str


@dataclass
class Upload:
    """What an upload found: good entries in chunks (with their first line), bad rows."""

    chunks: int = 0
    good: int = 0
    bad: list[BadRow] = field(default_factory=list)


def _column_index(reader: Any, column: str | None, *, header: bool) -> int | None:
    """The column to read (0: the first); None when the file is empty."""
    if not header:
        if column is not None:
            raise CliError("--column needs a header row (leave out --no-header)")
        return 0
    try:
        names = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise CliError(f"line 1: the header is not CSV ({exc})") from exc
    if column is None:
        return 0
    wanted = [n.strip().lower() for n in names]
    if column.lower() not in wanted:
        raise CliError(f"no column {column!r} in the header {names}")
    return wanted.index(column.lower())


def read_entries(
    text: IO[str], kind: ListKind, column: str | None, *, header: bool
) -> Iterator[tuple[int, str] | BadRow]:
    """Each row's entry with its line number, or the bad row and why."""
    reader = csv.reader(text)
    index = _column_index(reader, column, header=header)
    if index is None:
        return
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(line, "", f"not CSV: {exc}")
            continue
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines are not entries
        if index >= len(row):
            yield BadRow(reader.line_num, ",".join(row)[:200], f"no column {index + 1}")
            continue
        value = row[index]
        if list_value(kind, value) is None:
            yield BadRow(reader.line_num, value[:200], _WHY[kind])
        else:
            yield (reader.line_num, value.strip())


def chunk_commands(
    entries: Iterator[tuple[int, str] | BadRow],
    *,
    account: str,
    list_id: str,
    kind: ListKind,
    actor: Actor,
    chunk_size: int,
    found: Upload,
) -> Iterator[ExclusionListChunk]:
    """``exclusion_list.chunk`` commands of ``chunk_size`` entries, in file order (chunk 0
    starts the list afresh, even when the file has no good row)."""
    upload_id = uuid.uuid4()
    batch: list[tuple[int, str]] = []

    def chunk() -> ExclusionListChunk:
        found.chunks += 1
        found.good += len(batch)
        return ExclusionListChunk.create(
            account_id=account,
            payload=ListChunkPayload(
                actor=actor,
                list_id=list_id,
                kind=kind,
                upload_id=upload_id,
                chunk_index=found.chunks - 1,
                first_line=batch[0][0] if batch else 1,
                entries=tuple(v for _, v in batch),
            ),
        )

    for entry in entries:
        if isinstance(entry, BadRow):
            found.bad.append(entry)
            continue
        if batch and entry[0] != batch[-1][0] + 1:
            # first_line + offset gives each entry's line: a gap starts a new chunk.
            yield chunk()
            batch = []
        batch.append(entry)
        if len(batch) >= chunk_size:
            yield chunk()
            batch = []
    if batch or found.chunks == 0:
        yield chunk()


def follow_up(args: argparse.Namespace, actor: Actor, kind: ListKind) -> list[Message]:
    """The rule the list becomes, and the bulk exit, as asked."""
    out: list[Message] = []
    if args.rule:
        level = RuleLevel.WORKFLOW if args.rule_workflow else RuleLevel.GLOBAL
        definition = ExclusionRuleDefinition(
            rule_id=args.rule,
            name=args.rule_name or f"list {args.list}",
            level=level,
            workflow_id=args.rule_workflow,
            action=RuleAction(args.rule_action),
            when=ConditionGroup(
                conditions=(
                    Condition(field=_FIELD_OF_KIND[kind], operator="in_list", value=args.list),
                )
            ),
        )
        out.append(
            PutExclusionRule.create(
                account_id=args.account, payload=PutRulePayload(actor=actor, definition=definition)
            )
        )
    if args.exit_matches:
        out.append(
            ExitListMatches.create(
                account_id=args.account,
                payload=ListExitPayload(actor=actor, list_id=args.list, workflow_id=args.workflow),
            )
        )
    return out


async def _publish(commands: Iterator[Message], after: list[Message], on_sent: Any) -> None:
    servers, namespace = bootstrap()
    async with OfframpClient(servers, namespace) as client:
        for command in commands:
            await client.publish(command)
            on_sent()
        for message in after:
            await client.publish(message)


def cmd_exclusions_upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no file {path}")
    if not 1 <= args.chunk_size <= MAX_CHUNK:
        raise CliError(f"--chunk-size must be 1-{MAX_CHUNK}")
    kind = ListKind(args.kind)
    actor = (
        Actor(kind=ActorKind.USER, id=args.user)
        if args.user
        else Actor(kind=ActorKind.API, id="cli")
    )
    found = Upload()
    size = path.stat().st_size
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[entries]} entries, {task.fields[bad]} bad"),
        TimeRemainingColumn(),
        disable=args.quiet,
    )
    with path.open("rb") as raw, progress:
        counting = _CountingReader(raw)
        text = io.TextIOWrapper(io.BufferedReader(counting), encoding="utf-8-sig", newline="")
        task = progress.add_task(f"upload {path.name}", total=size, entries=0, bad=0)

        def sent() -> None:
            progress.update(task, completed=counting.count, entries=found.good, bad=len(found.bad))

        commands = chunk_commands(
            read_entries(text, kind, args.column, header=not args.no_header),
            account=args.account,
            list_id=args.list,
            kind=kind,
            actor=actor,
            chunk_size=args.chunk_size,
            found=found,
        )
        try:
            asyncio.run(_publish(commands, follow_up(args, actor, kind), sent))
        except UnicodeDecodeError as exc:
            raise CliError(f"the file is not UTF-8 text ({exc})") from exc
        progress.update(task, completed=size)
    for bad in found.bad:
        print(f"line {bad.line}: {bad.reason}: {bad.value!r}", file=sys.stderr)
    print(
        f"uploaded {found.good} entries to list {args.list} in {found.chunks} chunk(s); "
        f"{len(found.bad)} bad row(s) skipped"
        + (f"; rule {args.rule} ({args.rule_action}) sent" if args.rule else "")
        + ("; bulk exit of its matches sent" if args.exit_matches else "")
    )
    return 1 if found.bad else 0


def exclusion_parsers(parent: argparse.ArgumentParser) -> None:
    sub = parent.add_subparsers(dest="exclusions_command", required=True)
    text = (
        "stream a CSV of emails, domains or company names to an exclusion list (any size, in"
        " chunks, with progress); bad rows are reported by line and skipped"
    )
    p = sub.add_parser("upload", help=text, description=text)
    p.add_argument("--account", required=True, help="the account (tenant) id")
    p.add_argument("--user", help="the user acting (default: the API actor 'cli')")
    p.add_argument("--list", required=True, help="the list's id (a new upload replaces it)")
    p.add_argument("--kind", required=True, choices=[k.value for k in ListKind])
    p.add_argument("--column", help="the header's column to read (default: the first one)")
    p.add_argument("--no-header", action="store_true", help="the file has no header row")
    p.add_argument("--chunk-size", type=int, default=MAX_CHUNK, help="entries per message")
    p.add_argument("--rule", metavar="RULE_ID", help="also make the list a rule with this id")
    p.add_argument("--rule-name")
    p.add_argument("--rule-action", choices=[a.value for a in RuleAction], default="remove")
    p.add_argument("--rule-workflow", help="make it that workflow's rule (default: global)")
    p.add_argument(
        "--exit-matches", action="store_true", help="also exit every current match at once"
    )
    p.add_argument("--workflow", help="with --exit-matches: only this workflow")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("file")
