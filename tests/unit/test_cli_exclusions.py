"""``offramp exclusions upload`` without Kafka: rows to entries, bad rows by line, chunks."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from shared.cli_common import CliError
from shared.cli_exclusions import BadRow, Upload, chunk_commands, follow_up, read_entries
from shared.contracts import Actor, ActorKind
from shared.contracts.exclusions import ExitListMatches, ListKind, PutExclusionRule

pytestmark = pytest.mark.unit

ACTOR = Actor(kind=ActorKind.API, id="cli")


def entries(
    text: str, kind: ListKind = ListKind.EMAIL, column: str | None = None, *, header: bool = True
) -> list[tuple[int, str] | BadRow]:
    return list(read_entries(io.StringIO(text), kind, column, header=header))


def test_good_rows_keep_their_line_and_bad_rows_say_why() -> None:
    text = "email,name\nann@acme.com,Ann\nnot-an-address,X\n\nbob@globex.com,Bob\n,\n"
    assert entries(text) == [
        (2, "ann@acme.com"),
        BadRow(3, "not-an-address", "not an email address"),
        (5, "bob@globex.com"),
    ]


def test_a_named_column_is_read_and_a_short_row_is_bad() -> None:
    text = "name,domain\nAcme,WWW.Acme.com\nGlobex\n"
    assert entries(text, ListKind.DOMAIN, column="Domain") == [
        (2, "WWW.Acme.com"),
        BadRow(3, "Globex", "no column 2"),
    ]
    with pytest.raises(CliError, match="no column 'site'"):
        entries(text, ListKind.DOMAIN, column="site")


def test_a_file_without_header_starts_at_line_one() -> None:
    assert entries("Acme Inc\n  \nGlobex\n", ListKind.COMPANY_NAME, header=False) == [
        (1, "Acme Inc"),
        (3, "Globex"),
    ]


def test_chunks_are_in_file_order_and_a_gap_in_lines_starts_a_new_one() -> None:
    found = Upload()
    rows: list[tuple[int, str] | BadRow] = [
        (2, "a@x.io"),
        (3, "b@x.io"),
        (4, "c@x.io"),
        BadRow(5, "?", "bad"),
        (6, "d@x.io"),
    ]
    chunks = list(
        chunk_commands(
            iter(rows),
            account="acc",
            list_id="l-1",
            kind=ListKind.EMAIL,
            actor=ACTOR,
            chunk_size=2,
            found=found,
        )
    )
    assert [(c.payload.chunk_index, c.payload.first_line, c.payload.entries) for c in chunks] == [
        (0, 2, ("a@x.io", "b@x.io")),
        (1, 4, ("c@x.io",)),
        (2, 6, ("d@x.io",)),
    ]
    assert len({c.payload.upload_id for c in chunks}) == 1
    assert (found.chunks, found.good, found.bad) == (3, 4, [BadRow(5, "?", "bad")])
    assert {c.partition_key() for c in chunks} == {"acc/exclusions"}


def test_an_empty_file_still_starts_the_list_afresh() -> None:
    chunks = list(
        chunk_commands(
            iter([]),
            account="acc",
            list_id="l",
            kind=ListKind.DOMAIN,
            actor=ACTOR,
            chunk_size=10,
            found=Upload(),
        )
    )
    assert [(c.payload.chunk_index, c.payload.entries) for c in chunks] == [(0, ())]


def test_the_list_becomes_a_rule_and_a_bulk_exit_when_asked() -> None:
    args = SimpleNamespace(
        rule="r-list",
        rule_name=None,
        rule_workflow=None,
        rule_action="remove",
        exit_matches=True,
        account="acc",
        list="l-1",
        workflow="wf-1",
    )
    rule, bulk = follow_up(args, ACTOR, ListKind.DOMAIN)  # type: ignore[arg-type]
    assert isinstance(rule, PutExclusionRule)
    (condition,) = rule.payload.definition.when.conditions
    assert (condition.field, condition.operator, condition.value) == ("domain", "in_list", "l-1")  # type: ignore[union-attr]
    assert isinstance(bulk, ExitListMatches)
    assert bulk.payload.workflow_id == "wf-1"
