"""Settings every service shares, read only from the environment (prefix ``OFFRAMP_``).

``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` are also accepted without the prefix,
as the local provisioning and most platforms export them that way.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OFFRAMP_", extra="ignore")

    kafka_bootstrap_servers: str = Field(  # type: ignore[pydantic-alias]
        "127.0.0.1:9092",
        validation_alias=AliasChoices("OFFRAMP_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list of Kafka brokers.",
    )
    database_url: str = Field(  # type: ignore[pydantic-alias]
        "postgresql://offramp:offramp@127.0.0.1:5432/offramp",
        validation_alias=AliasChoices("OFFRAMP_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL DSN; each service uses its own schema in this database.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field("auto", description="json, console, or auto (console on a TTY).")
    db_pool_min: int = Field(2, ge=1, description="Connections the pool keeps open.")
    db_pool_max: int = Field(10, ge=1, description="Most connections the pool opens.")
    db_command_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Longest any statement may take before it is abandoned as a transient "
        "failure (a connection that stopped answering must not hang a loop).",
    )
    consumer_max_records: int = Field(500, ge=1, description="Messages per batch transaction.")
    consumer_batch_timeout_ms: int = Field(
        5, ge=0, description="How long a poll waits to fill a batch; low keeps latency low."
    )
    consumer_fetch_min_bytes: int = Field(
        65_536,
        ge=1,
        description="The broker answers a fetch once this much is there (or the wait ends): "
        "fewer, larger fetches cost less CPU than one per message.",
    )
    consumer_fetch_max_wait_ms: int = Field(
        50,
        ge=0,
        description="Longest the broker holds a fetch to fill it: adds up to this much per "
        "hop when traffic is light, and buys larger, cheaper batches under load.",
    )
    consumer_max_attempts: int = Field(
        5, ge=1, description="Attempts for a failing message before it is dead-lettered."
    )
    consumer_backoff_initial_s: float = Field(
        0.2, gt=0, description="Wait before retrying a failed message; doubles each attempt."
    )
    consumer_backoff_max_s: float = Field(
        5.0, gt=0, description="Longest wait between two attempts of one message."
    )
    outbox_batch_size: int = Field(1000, ge=1, description="Outbox rows relayed per round.")
    outbox_poll_interval_s: float = Field(
        1.0, gt=0, description="Fallback poll when no NOTIFY arrives (NOTIFY wakes it at once)."
    )
    topic_namespace: str = Field(
        "",
        pattern=r"^[a-z0-9._-]*$",
        description="Prefix of every topic name, so environments can share a cluster.",
    )
    create_topics: bool = Field(True, description="Create missing topics on start.")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of topics this service creates (3 in production)."
    )
    inbox_retention_days: float = Field(
        14.0,
        gt=0,
        description="How long processed message ids are kept for de-duplication; keep it "
        "above the retention of every topic the service reads (Kafka's default is 7 days).",
    )
    health_port: int = Field(0, ge=0, description="Port of /healthz and /readyz; 0 disables.")
