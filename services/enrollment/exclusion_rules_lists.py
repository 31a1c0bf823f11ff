"""Uploaded lists, decided purely: each entry normalised, each bad one with its line."""

from __future__ import annotations

from dataclasses import dataclass

from services.enrollment.exclusions_ports import ListChunk
from shared.contracts.exclusions import BadEntry, ExclusionListChunk, ListKind
from shared.domains import list_value

_WHAT = {
    ListKind.EMAIL: "not an email address",
    ListKind.DOMAIN: "not a domain name",
    ListKind.COMPANY_NAME: "an empty company name",
}


@dataclass(frozen=True, slots=True)
class ChunkDecision:
    chunk: ListChunk
    bad: tuple[BadEntry, ...]
    command: ExclusionListChunk


def decide_chunk(command: ExclusionListChunk) -> ChunkDecision:
    """The chunk's good entries (normalised, with their line) and its bad ones: a bad row
    never stops the good ones."""
    payload = command.payload
    good: dict[str, int] = {}
    bad: list[BadEntry] = []
    for offset, entry in enumerate(payload.entries):
        line = payload.first_line + offset
        value = list_value(payload.kind, entry)
        if value is None:
            bad.append(BadEntry(line=line, value=entry[:400], reason=_WHAT[payload.kind]))
        else:
            good.setdefault(value, line)
    chunk = ListChunk(
        command.account_id,
        payload.list_id,
        payload.kind,
        payload.upload_id,
        payload.chunk_index,
        good,
    )
    return ChunkDecision(chunk, tuple(bad), command)
