"""Enrollment settings (environment, prefix ``OFFRAMP_``): the shared ones for now."""

from __future__ import annotations

from shared.settings import ServiceSettings


class EnrollmentSettings(ServiceSettings):
    pass
