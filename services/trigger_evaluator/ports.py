"""What trigger-evaluator needs from storage: the ``TriggerEvaluatorStore`` port.

``repository.PostgresTriggerEvaluatorStore`` is the real one; ``tests/support/fakes`` holds
an in-memory one that passes the same contract suite (``tests/contract``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from services.trigger_evaluator.domain import Candidate, CompanySearch, Decision, EnrollmentView
from services.trigger_evaluator.parking import ParkedEvent
from services.trigger_evaluator.projection import EnrollmentEvent
from services.trigger_evaluator.record_fields import RecordKey, Snapshot
from services.trigger_evaluator.record_links import RecordDataEvent
from services.trigger_evaluator.triggers import Signal
from shared.contracts.events import MessageSent, WorkflowApplied


class TriggerEvaluatorStore(Protocol):
    """Each method takes a run of messages in partition order, costs one statement however
    long the run, and leaves what handling them one by one would leave. Nothing crosses
    accounts; every write is idempotent (a re-applied event changes nothing)."""

    async def save_workflow_versions(self, applied: Sequence[WorkflowApplied]) -> None:
        """Keep each version's exit settings; a version, once known, never changes."""
        ...

    async def save_enrollment_events(self, events: Sequence[EnrollmentEvent]) -> None:
        """Add enrollments and follow their status; ended is final."""
        ...

    async def save_sent_messages(self, sent: Sequence[MessageSent]) -> None:
        """Remember which enrollment sent each email, for replies that quote it."""
        ...

    async def candidates(self, signals: Sequence[Signal]) -> list[list[Candidate]]:
        """For each signal, the enrollments its lookup finds (all but company matches),
        strongest match first."""
        ...

    async def live_by_company(
        self, searches: Sequence[CompanySearch]
    ) -> list[list[EnrollmentView]]:
        """For each search, the active or paused contact enrollments of its company: the
        contacts of the organizations associated with its anchors (and contact anchors),
        or, when its anchors have none, the enrollments of its company domains."""
        ...

    async def save_record_links(self, events: Sequence[RecordDataEvent]) -> None:
        """Follow the CRM's associations between records (``record_links``)."""
        ...

    async def swap_record_fields(
        self, last: Mapping[RecordKey, Snapshot | None]
    ) -> dict[RecordKey, Snapshot]:
        """Store each record's last snapshot of a run (None: forget the record); returns
        the snapshots stored before, of the records that had one."""
        ...

    async def save_decisions(self, decisions: Sequence[Decision]) -> None:
        """Record every decision, once per event and enrollment (the first one kept)."""
        ...

    async def park(self, parked: Sequence[ParkedEvent]) -> set[tuple[str, str]]:
        """Keep each event (the last of a run per event wins) until unparked; returns the
        (account, inbound message id) of those kept.

        A conditional one (``only_if_a_workflow_exits_on``) is kept only if a workflow
        version of its account exits on that trigger, or the account has none yet. An
        event parked again keeps when it was parked and when it expires; its keys, why
        and next check are replaced.
        """
        ...

    async def parked_for(self, keys: Sequence[str]) -> list[ParkedEvent]:
        """The parked events holding any of ``keys``, in parking order, locked for this
        transaction (waiting for a transaction that holds one)."""
        ...

    async def parked_due(self, now: datetime, limit: int) -> list[ParkedEvent]:
        """Up to ``limit`` parked events whose check is due at ``now`` (earliest due first),
        in parking order, locked; events another transaction holds are skipped."""
        ...

    async def unpark(self, parked: Sequence[ParkedEvent]) -> None:
        """Forget these parked events (decided or released)."""
        ...
