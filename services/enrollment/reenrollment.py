"""Re-enrollment rules: whether a record that was (or is) in a workflow may enter it again.

Pure: the enroll decision (``domain.decide_enrollment``) asks these. One live (active or
paused) enrollment per (workflow, record) is a database invariant, so the policies differ
in what an enroll of a record that was or is in the workflow does:

- ``never``: one enrollment per record, ever: any earlier one refuses the enroll
  (``reenrollment_not_allowed``).
- ``when_not_active``: again once the earlier one ended (completed or exited); while it is
  live the enroll is refused (``already_enrolled``).
- ``anytime``: like ``when_not_active`` once it ended; while it is live the enroll
  *restarts* it: the live enrollment exits (reason ``reenrolled``) and the record enters
  the current version at its first step, in the same transaction. While a step of the live
  enrollment is being sent (or it is already exiting) the enroll is refused
  (``already_enrolled``): enroll again once that send is settled.

``min_days_between_enrollments`` (any policy but ``never``) counts from the start of the
record's latest enrollment in the workflow, live or ended: an enroll earlier than that is
refused (``reenrollment_too_soon``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.contracts.events import Rejection
from shared.contracts.workflow import ReenrollmentPolicy, WorkflowSettings

if TYPE_CHECKING:  # domain asks these rules: a run-time import would be circular
    from services.enrollment.domain import Enrollment


def restarted(settings: WorkflowSettings, previous: Sequence[Enrollment]) -> Enrollment | None:
    """The live enrollment an enroll restarts: an ``anytime`` workflow's, when nothing of
    it is in flight (no step granted to messaging, no exit pending)."""
    if settings.reenrollment is not ReenrollmentPolicy.ANYTIME:
        return None
    for enrollment in previous:
        if enrollment.status.live and enrollment.dispatch is None and not enrollment.exiting:
            return enrollment
    return None


def rejections(
    settings: WorkflowSettings, previous: Sequence[Enrollment], now: datetime
) -> list[Rejection]:
    """Every re-enrollment rule ``previous`` (the record's enrollments in this workflow,
    any status) breaks for an enroll at ``now``."""
    if not previous:
        return []
    if any(e.status.live for e in previous) and restarted(settings, previous) is None:
        return [_already_enrolled(settings)]
    if settings.reenrollment is ReenrollmentPolicy.NEVER:
        return [Rejection(code="reenrollment_not_allowed", detail="the workflow never re-enrolls")]
    latest = max(previous, key=lambda e: e.enrolled_at)
    min_days = settings.min_days_between_enrollments
    if min_days and now - latest.enrolled_at < timedelta(days=min_days):
        return [
            Rejection(
                code="reenrollment_too_soon",
                detail=f"the workflow allows re-enrollment {min_days} days after the last one",
            )
        ]
    return []


def _already_enrolled(settings: WorkflowSettings) -> Rejection:
    if settings.reenrollment is ReenrollmentPolicy.ANYTIME:
        return Rejection(
            code="already_enrolled",
            detail="the record's enrollment in this workflow is sending a step or exiting: "
            "enroll again once that is settled",
        )
    return Rejection(code="already_enrolled", detail="the record is already in this workflow")
