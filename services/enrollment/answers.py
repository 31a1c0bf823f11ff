"""Answers to commands that changed nothing: every command gets one (``command.refused``).

A command that changed something is answered by what changed (``enrollment.exited``,
``enrollment.paused``...), each event caused by it. One that changed nothing, for a whole
command or for one record or enrollment of it, is answered here with a stable code the
requester can act on, and the same words the log has. No I/O here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.enrollment.domain import Enrollment, Status, Unchanged
from shared.contracts import Message, RecordRef


@dataclass(frozen=True, slots=True)
class Answer:
    """A command, or one record or enrollment it named, changed nothing, and why."""

    account_id: str
    command_type: str
    code: str
    detail: str
    workflow_id: str | None = None
    record: RecordRef | None = None
    enrollment_id: uuid.UUID | None = None

    @property
    def subject(self) -> str:
        """What the answer is about: its id is derived from the command and this."""
        if self.enrollment_id is not None:
            return str(self.enrollment_id)
        record = self.record.key(self.account_id) if self.record else "-"
        return f"{self.workflow_id or '-'}:{record}"


def refused(
    command: Message,
    code: str,
    detail: str,
    *,
    workflow_id: str | None = None,
    record: RecordRef | None = None,
    enrollment_id: uuid.UUID | None = None,
) -> Answer:
    return Answer(
        command.account_id, command.type, code, detail, workflow_id, record, enrollment_id
    )


def unchanged(command: Message, enrollment: Enrollment, why: Unchanged) -> Answer:
    """The answer for one enrollment a command named and left as it was."""
    return refused(
        command,
        why.code,
        why.why,
        workflow_id=enrollment.workflow_id,
        record=enrollment.record,
        enrollment_id=enrollment.enrollment_id,
    )


def no_live_enrollment(
    command: Message,
    record: RecordRef,
    workflow_id: str | None,
    ended: Enrollment | None,
) -> Answer:
    """A command about a record that has no live enrollment it names: ``ended`` is the
    latest one that did end (``already_exited`` / ``already_completed``), if known."""
    where = f"workflow {workflow_id!r}" if workflow_id else "any workflow"
    if ended is None or ended.status.live:
        return refused(
            command,
            "not_enrolled",
            f"the record is not live in {where}",
            workflow_id=workflow_id,
            record=record,
        )
    status = ended.status
    code = "already_exited" if status is Status.EXITED else f"already_{status.value}"
    return refused(
        command,
        code,
        f"the record's enrollment in {where} already {status.value}",
        workflow_id=ended.workflow_id,
        record=record,
        enrollment_id=ended.enrollment_id,
    )
