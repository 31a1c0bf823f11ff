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
            "providers), as a JSON list; their contacts are not unenrolled together."
        ),
    )
