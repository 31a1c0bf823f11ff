"""Scheduler settings (environment, prefix ``OFFRAMP_``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    scheduler_tick_s: float = Field(
        0.05, gt=0, description="How often due timers are looked for when idle."
    )
    scheduler_batch_size: int = Field(
        1000, ge=1, description="Timers fired per transaction (more are fired at once after)."
    )
