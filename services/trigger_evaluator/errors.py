"""trigger-evaluator's own errors: one hierarchy, each saying what happens to the message.

Every one of them propagates: the pipeline retries the message, then dead-letters it with
the error as its reason (none is a ``RejectedMessageError``: each is either a moment's
lag or a bug, never bad input).
"""

from __future__ import annotations


class TriggerEvaluatorError(Exception):
    """Base of trigger-evaluator's own errors."""


class WorkflowVersionUnknownError(TriggerEvaluatorError):
    """A live enrollment's workflow version has not reached this service's projection.

    Raised rather than guessed by ``domain.decide``, for a caller that cannot wait. The
    handlers never let it reach the pipeline: they ask ``domain.evaluate``, which says
    the event waits, and park it until the ``workflow.applied`` is projected.
    """

    def __init__(self, account_id: str, workflow_id: str, version: int) -> None:
        super().__init__(
            f"workflow {workflow_id!r} version {version} of account {account_id!r} is not "
            "projected yet; replay this event once offramp.workflow.events.v1 has caught up"
        )


class CrossAccountError(TriggerEvaluatorError):
    """A candidate enrollment belongs to another account than the event: a store bug."""


class NotAnExitError(TriggerEvaluatorError, ValueError):
    """Only an exit decision becomes an ``enrollment.exit`` command (a caller's bug)."""


class NotAProjectionEventError(TriggerEvaluatorError, TypeError):
    """The projection was handed a type it does not keep (a wiring mistake)."""
