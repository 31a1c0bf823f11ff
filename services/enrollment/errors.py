"""Enrollment's exceptions: each says what was wrong and what happens next."""

from __future__ import annotations

import uuid


class EnrollmentError(Exception):
    """Base of every error raised by the enrollment service."""


class MissingWorkflowVersionError(EnrollmentError):
    """An enrollment names a workflow version the store does not hold.

    An ordinary error on purpose (not a rejection): every enrollment row references its
    version, so this means the store is not what it should be; the pipeline retries with
    backoff and dead-letters the message only if it keeps failing.
    """

    def __init__(self, account_id: str, enrollment_id: uuid.UUID) -> None:
        super().__init__(f"workflow version of {enrollment_id} (account {account_id!r}) is missing")
        self.account_id = account_id
        self.enrollment_id = enrollment_id
