"""Messaging's exceptions: each says what was wrong and what happens next.

``MessagingError`` is the base of all of them; ``StepMismatchError`` is also a
``RejectedMessageError``, the pipeline's signal to dead-letter a message at once.
"""

from __future__ import annotations

from shared.consumer import RejectedMessageError
from shared.contracts.events import FailureKind


class MessagingError(Exception):
    """Base of every error raised by the messaging service."""


class UnknownWorkflowStepError(MessagingError, RejectedMessageError):
    """A workflow version messaging has projected has no step at the index a granted step names:
    it can never be sent. (A version not projected yet is no error: the step is parked
    until its ``workflow.applied`` arrives.)"""

    def __init__(self, account_id: str, workflow_id: str, version: int, step_index: int) -> None:
        RejectedMessageError.__init__(
            self,
            f"workflow {workflow_id!r} version {version} (account {account_id!r}) has no step "
            f"{step_index}; the scheduler and enrollment disagree on the workflow version",
            kind="unknown_step",
        )


class StepMismatchError(MessagingError, RejectedMessageError):
    """A granted step disagrees with the workflow version it names: it can never be sent."""

    def __init__(
        self,
        *,
        workflow_id: str,
        version: int,
        step_index: int,
        due: tuple[str, str],
        known: tuple[str, str],
    ) -> None:
        """``due`` and ``known``: (step id, channel) as the grant and the version have it."""
        RejectedMessageError.__init__(
            self,
            f"enrollment.step_granted names step {step_index} as {due[0]!r} ({due[1]}) "
            f"but version {version} of {workflow_id!r} has "
            f"{known[0]!r} ({known[1]}) there; the scheduler and enrollment "
            "disagree on the workflow version",
            kind="step_mismatch",
        )


class ProviderError(MessagingError):
    """A provider refused or failed a send.

    ``failure`` says how the provider refused it for good (``hard_bounce``: the recipient
    does not exist or refuses mail; ``rejected``: any other permanent refusal): retrying
    cannot help, so the send fails at once. None: transient (connection refused or reset,
    a time-out, SMTP 4xx, HTTP 5xx or 429), retried with backoff over the retry budget.
    """

    def __init__(
        self,
        reason: str,
        *,
        failure: FailureKind | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """``retry_after_s``: the provider asked not to be called again sooner (HTTP
        Retry-After on a 429 or 503); the next attempt waits at least that long."""
        super().__init__(reason)
        self.failure = failure
        self.retry_after_s = retry_after_s

    @property
    def permanent(self) -> bool:
        return self.failure is not None
