"""Messaging's exceptions: each says what was wrong and what happens next.

``MessagingError`` is the base of all of them; ``StepMismatchError`` is also a
``RejectedMessageError``, the pipeline's signal to dead-letter a message at once.
"""

from __future__ import annotations

from shared.consumer import RejectedMessageError


class MessagingError(Exception):
    """Base of every error raised by the messaging service."""


class UnknownWorkflowStepError(MessagingError):
    """A due step names a workflow version or step messaging has not seen (yet).

    An ordinary error on purpose: ``workflow.applied`` travels on another topic and may be
    behind, so the pipeline retries with backoff and dead-letters only if it never comes.
    """

    def __init__(self, account_id: str, workflow_id: str, version: int, step_index: int) -> None:
        super().__init__(
            f"step {step_index} of workflow {workflow_id!r} version {version} (account "
            f"{account_id!r}) is unknown to messaging; it needs the workflow.applied event of "
            "that version: replay it onto the workflow events topic if it was lost"
        )


class StepMismatchError(MessagingError, RejectedMessageError):
    """A due step disagrees with the workflow version it names: it can never be sent."""

    def __init__(
        self,
        *,
        workflow_id: str,
        version: int,
        step_index: int,
        due: tuple[str, str],
        known: tuple[str, str],
    ) -> None:
        """``due`` and ``known``: (step id, channel) as the step.due and the version have it."""
        RejectedMessageError.__init__(
            self,
            f"step.due names step {step_index} as {due[0]!r} ({due[1]}) "
            f"but version {version} of {workflow_id!r} has "
            f"{known[0]!r} ({known[1]}) there; the scheduler and enrollment "
            "disagree on the workflow version",
            kind="step_mismatch",
        )


class ProviderError(MessagingError):
    """A provider refused or failed a send; the send is retried, then marked failed.

    ``permanent`` says the provider will refuse it again (e.g. the recipient does not
    exist): retrying only wastes attempts, so the send fails at once.
    """

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent
