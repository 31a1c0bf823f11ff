"""Uploaded exclusion lists in the enrollment handlers: chunks with bad rows, list rules
that block and remove, bulk exits by list.

Every case runs on the harness, as one batch and message by message (tests/support).
"""

from __future__ import annotations

import pytest

from shared.contracts import RecordRef
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import EnrollmentEnrolled, EnrollmentExited, EnrollmentRejected
from shared.contracts.exclusions import (
    ExclusionListChunkApplied,
    ExclusionListMatchesExited,
    ExclusionRejected,
    ListKind,
    RuleAction,
)
from tests.support.builders.enrollment_commands import ALICE, BOB, apply_cmd, definition
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.enrollment_setup import EnrollmentHarness, enrollment_harness, only
from tests.support.builders.exclusion_commands import (
    enroll_from,
    exit_on_list,
    list_chunk,
    put_rule,
    upserted,
)
from tests.support.builders.exclusions import cond

pytestmark = pytest.mark.handler


@pytest.fixture
async def h() -> EnrollmentHarness:
    harness = enrollment_harness()
    await harness.given(apply_cmd(definition()))
    return harness


async def enrolled(h: EnrollmentHarness, record: RecordRef) -> EnrollmentEnrolled:
    return only(await h.when(enroll_from(record)), EnrollmentEnrolled)


async def test_a_list_chunk_keeps_good_rows_and_reports_bad_ones_by_line(
    h: EnrollmentHarness,
) -> None:
    outcome = await h.when(
        list_chunk(
            "l-1", ListKind.DOMAIN, "Acme.com", "not a domain", "www.globex.com.", first_line=2
        )
    )

    applied = only(outcome, ExclusionListChunkApplied)
    assert applied.payload.accepted == 2
    assert [(b.line, b.value, b.reason) for b in applied.payload.bad] == [
        (3, "not a domain", "not a domain name")
    ]
    assert h.store.entries_of[(ACCOUNT, "l-1")] == {"acme.com": 2, "globex.com": 4}


async def test_a_list_rule_blocks_and_a_later_chunk_removes_what_it_matches(
    h: EnrollmentHarness,
) -> None:
    await h.given(
        list_chunk("l-1", ListKind.EMAIL, "c-1@acme.com"),
        put_rule("r-list", cond("email", "in_list", "l-1"), action=RuleAction.REMOVE),
    )
    rejected = only(await h.when(enroll_from(ALICE)), EnrollmentRejected)
    assert [r.rule_id for r in rejected.payload.rejections] == ["r-list"]
    await enrolled(h, BOB)

    outcome = await h.when(list_chunk("l-1", ListKind.EMAIL, "C-2@Acme.com", index=1))

    exited = only(outcome, EnrollmentExited)
    assert exited.payload.record == BOB
    assert exited.payload.exclusion is not None
    assert exited.payload.exclusion.rule_id == "r-list"


async def test_a_bulk_exit_by_list_exits_every_match_at_once(h: EnrollmentHarness) -> None:
    await h.given(upserted(BOB, email="bob@globex.com", domains=("globex.com",)))
    await enrolled(h, ALICE)
    await enrolled(h, BOB)
    await h.given(list_chunk("l-co", ListKind.DOMAIN, "globex.com"))

    outcome = await h.when(exit_on_list("l-co"))

    exited = only(outcome, EnrollmentExited)
    assert (exited.payload.record, exited.payload.reason, exited.payload.source) == (
        BOB,
        ExitReason.MANUAL,
        ExitSource.BULK,
    )
    assert only(outcome, ExclusionListMatchesExited).payload.exited == 1


async def test_a_bulk_exit_by_an_unknown_list_is_rejected(h: EnrollmentHarness) -> None:
    rejected = only(await h.when(exit_on_list("nope")), ExclusionRejected)
    assert [p.code for p in rejected.payload.problems] == ["unknown_list"]
