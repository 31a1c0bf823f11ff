"""Messaging settings (environment, prefix ``OFFRAMP_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from shared.settings import ServiceSettings


class MessagingSettings(ServiceSettings):
    message_id_domain: str = Field(
        "offramp.local",
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$",
        description="Right-hand side of every Message-ID we set: <enrollment.step@domain>.",
    )
    default_sender: str = Field(
        "outreach@offramp.local",
        min_length=3,
        max_length=320,
        description="From address (or number) of steps that name no sender.",
    )
    email_provider: Literal["smtp", "log"] = Field(
        "smtp", description="smtp sends through OFFRAMP_SMTP_*; log only logs each email."
    )
    smtp_host: str = Field("127.0.0.1", description="SMTP relay host.")
    smtp_port: int = Field(1025, ge=1, le=65535, description="SMTP relay port.")
    smtp_use_tls: bool = Field(False, description="Implicit TLS from the first byte (port 465).")
    smtp_start_tls: bool | None = Field(
        None, description="Force STARTTLS on (true) or off (false); null: if the server offers it."
    )
    smtp_username: str | None = Field(None, description="SMTP AUTH user; null: no AUTH.")
    smtp_password: SecretStr | None = Field(None, description="SMTP AUTH password.")
    send_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest a provider call may take (no transaction is open meanwhile); a "
        "claim's lease is twice this plus 30 s.",
    )
    send_retry_budget_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="How long transient provider failures (connection refused, time-outs, "
        "SMTP 4xx, HTTP 5xx/429) are retried, from the first of them, before the send fails "
        "with message.failed (retries_exhausted).",
    )
    send_retry_backoff_s: float = Field(
        2.0, gt=0, description="Wait before the second attempt; doubles after each failure."
    )
    send_retry_backoff_max_s: float = Field(
        300.0, gt=0, description="Longest wait between two attempts of one send."
    )
    send_batch_size: int = Field(
        100,
        ge=1,
        description="Most sends claimed per round; never more than OFFRAMP_SEND_CONCURRENCY, "
        "so every claimed send's provider call starts at once.",
    )
    send_concurrency: int = Field(32, ge=1, description="Provider calls in flight per replica.")
    send_poll_interval_s: float = Field(
        1.0, gt=0, description="Fallback poll when no NOTIFY arrives (NOTIFY wakes it at once)."
    )
    send_orphan_grace_s: float = Field(
        300.0,
        gt=0,
        description="How long a granted step may wait for its enrollment.enrolled before it is "
        "cancelled as having no recipient.",
    )
    park_max_s: float = Field(
        3600.0,
        gt=0,
        description="How long a granted step may wait for the workflow.applied of its version "
        "(parked) before it fails with message.failed (rejected, workflow version never "
        "arrived).",
    )
    send_limit_per_day: int = Field(
        0,
        ge=0,
        description="Rolling 24-hour limit of provider calls per sending mailbox or number (a "
        "send's sender, per account), shared by every workflow and replica; steps over it "
        "wait, in due order, until capacity frees. 0: no limit. OFFRAMP_SEND_LIMITS "
        "overrides it per account or per sender.",
    )
    send_limits: dict[str, int] = Field(
        {},
        description='JSON object of per-account or per-sender limits, e.g. {"acme": 1000, '
        '"acme/sales@acme.com": 350}: the key is an account id (every sender of it) or '
        "<account>/<sender>; the most specific wins; 0: no limit.",
    )

    @field_validator("send_limits")
    @classmethod
    def _limits(cls, limits: dict[str, int]) -> dict[str, int]:
        for key, limit in limits.items():
            if limit < 0 or not key or key.startswith("/") or key.endswith("/"):
                raise ValueError(f"send limit {key!r}: {limit} is not <account>[/<sender>]: n>=0")
        return limits
