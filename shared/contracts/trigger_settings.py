"""Per-workflow settings of the automatic exit triggers (part of ``WorkflowSettings``).

Every setting is checked when the workflow is applied (``workflow.apply``): a rule that
could never match, or could not be evaluated (a regex that does not compile), is refused
there, with the reason, instead of silently never firing.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.contracts.base import Contract


class OutOfOfficeSettings(Contract):
    """What an automatic (out-of-office) reply does: it pauses, never exits.

    The enrollment resumes ``resume_margin_hours`` after the start (00:00 UTC) of the
    return date found in the reply, or ``fallback_days`` after the reply when none is
    found, and never later than ``max_days`` after the reply (Outreach's "auto-resume
    expires in").
    """

    pause: bool = Field(
        True, description="Pause the enrollment on an automatic reply (off: ignore it)."
    )
    resume_margin_hours: float = Field(
        24.0,
        ge=0,
        le=24 * 30,
        description="Resume this long after the start (00:00 UTC) of the return date.",
    )
    fallback_days: int = Field(
        14, ge=1, le=365, description="Resume after this many days when no date is found."
    )
    max_days: int = Field(
        30, ge=1, le=365, description="Never resume later than this many days after the reply."
    )

    @model_validator(mode="after")
    def _check(self) -> OutOfOfficeSettings:
        if self.fallback_days > self.max_days:
            raise ValueError("out_of_office.fallback_days must not exceed max_days")
        return self
