"""The scheduler's exceptions.

Nothing the scheduler consumes is refused today: a step for an ended enrollment arms no
timer, a stop for an unknown one cancels nothing. New refusals subclass these, and those
that dead-letter their message also subclass ``shared.consumer.RejectedMessageError``.
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the scheduler raises."""
