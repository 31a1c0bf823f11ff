"""Messaging's exceptions: each says what was wrong and what happens next."""

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


class StepMismatchError(RejectedMessageError):
    """A due step disagrees with the workflow version it names: it can never be sent."""


class ProviderError(MessagingError):
    """A provider refused or failed a send; the send is retried, then marked failed.

    ``permanent`` says the provider will refuse it again (e.g. the recipient does not
    exist): retrying only wastes attempts, so the send fails at once.
    """

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent
