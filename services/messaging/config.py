"""Messaging settings (environment, prefix ``OFFRAMP_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

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
    smtp_validate_certs: bool = Field(
        True, description="Check the relay's TLS certificate (implicit TLS and STARTTLS)."
    )
    smtp_cert_bundle: str | None = Field(
        None, description="CA bundle (PEM file) to check the relay's certificate with."
    )
    smtp_pool_size: int = Field(
        32,
        ge=1,
        description="Most SMTP connections open to the relay at once; each carries several "
        "messages in turn. Keep it at least OFFRAMP_SEND_CONCURRENCY: a call that waits for "
        "a connection starts its MAIL FROM later than its lease check.",
    )
    smtp_pool_max_messages: int = Field(
        100, ge=1, description="Messages one SMTP connection carries before it is closed."
    )
    smtp_pool_idle_check_s: float = Field(
        5.0, gt=0, description="An SMTP connection idle longer than this is checked (NOOP)."
    )
    smtp_pool_idle_close_s: float = Field(
        60.0, gt=0, description="An SMTP connection idle longer than this is closed."
    )
    sms_provider: Literal["log", "twilio", "webhook"] = Field(
        "log",
        description="log only logs each SMS; twilio sends through OFFRAMP_TWILIO_*; webhook "
        "POSTs JSON to OFFRAMP_SMS_WEBHOOK_URL.",
    )
    chat_provider: Literal["log", "webhook"] = Field(
        "log",
        description="log only logs each chat message; webhook POSTs JSON to "
        "OFFRAMP_CHAT_WEBHOOK_URL (chat steps are addressed by the record).",
    )
    twilio_base_url: HttpUrl = Field(
        HttpUrl("https://api.twilio.com"),
        description="Base URL of the Twilio-compatible Messages API "
        "(POST {base}/2010-04-01/Accounts/{sid}/Messages.json).",
    )
    twilio_account_sid: str | None = Field(
        None, max_length=64, description="Account SID (the Basic auth user)."
    )
    twilio_auth_token: SecretStr | None = Field(None, description="Auth token (Basic password).")
    twilio_status_callback_url: HttpUrl | None = Field(
        None,
        description="StatusCallback sent with each message: where the provider reports "
        "delivery; the gateway there publishes message.delivery_status.",
    )
    sms_webhook_url: HttpUrl | None = Field(
        None, description="Where the webhook SMS provider POSTs each message (JSON)."
    )
    chat_webhook_url: HttpUrl | None = Field(
        None, description="Where the webhook chat provider POSTs each message (JSON)."
    )
    webhook_token: SecretStr | None = Field(
        None, description="Bearer token sent to the webhook providers; null: none."
    )
    webhook_lookup: bool = Field(
        False,
        description="The webhook answers GET {url}/{Idempotency-Key} (200 accepted, 404 not): "
        "a send left by a crash is then looked up instead of sent again.",
    )
    http_max_connections: int = Field(
        32, ge=1, description="Most HTTP connections open to each HTTP provider at once."
    )
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

    @model_validator(mode="after")
    def _providers_configured(self) -> MessagingSettings:
        """A chosen HTTP provider without its endpoint or credentials fails at start-up,
        not at the first send."""
        chosen = {"sms": self.sms_provider, "chat": self.chat_provider}
        twilio = self.twilio_account_sid and self.twilio_auth_token
        if "twilio" in chosen.values() and not twilio:
            raise ValueError(
                "a twilio provider needs OFFRAMP_TWILIO_ACCOUNT_SID and OFFRAMP_TWILIO_AUTH_TOKEN"
            )
        urls = {"sms": self.sms_webhook_url, "chat": self.chat_webhook_url}
        for channel, provider in chosen.items():
            if provider == "webhook" and urls[channel] is None:
                raise ValueError(
                    f"OFFRAMP_{channel.upper()}_PROVIDER=webhook needs "
                    f"OFFRAMP_{channel.upper()}_WEBHOOK_URL"
                )
        return self
