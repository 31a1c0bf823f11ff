"""The one place a service is wired: broker, pool, migrations, pipeline, relay, health.

A service describes itself with a ``ServiceSpec``; ``build_app`` turns it into a
FastStream application. Start-up order: logging, topics, pool, migrations, then the
broker and subscribers, then the outbox relay and the service's background loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import uvloop
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared import inbox
from shared.consumer import Handler, MessagePipeline
from shared.contracts import utc_now
from shared.contracts.topics import TOPIC_BY_NAME, TOPICS, physical
from shared.db import create_pool
from shared.health import HealthServer
from shared.kafka import (
    KafkaRelayProducer,
    create_broker,
    document_publisher,
    document_subscriber,
    ensure_topics,
    subscribe_pipeline,
)
from shared.logging import configure_logging, get_logger
from shared.migrations import migrate
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from shared.uow import StoreFactory, UnitOfWork

log = get_logger(__name__)

INBOX_PRUNE_INTERVAL_S = 3600.0

RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
GIVE_UP_AFTER_CRASHES = 8
"""A loop that crashes this many times in a row (each run shorter than HEALTHY_RUN_S) is
given up: liveness fails and the process stops, so the orchestrator starts a fresh one."""
HEALTHY_RUN_S = 60.0

LOOP_DRAIN_S = 15.0
"""How long a stopping service waits for its loops to finish their round: above one
provider call's time-out (``OFFRAMP_SEND_TIMEOUT_S``, 10 s). The loops are told to stop
when shutdown begins, so this runs alongside FastStream's own 15 s graceful stop; keep
``terminationGracePeriodSeconds`` above 30 s."""

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
StoreT = TypeVar("StoreT")


class BackgroundLoop(Protocol):
    """A loop that runs for the life of the service (timers, sender), supervised.

    ``run`` returns once ``runtime.stopping`` is set, after the round in hand: the
    service waits for that (up to LOOP_DRAIN_S) before it closes the pool.
    """

    @property
    def stats(self) -> object:
        """A dataclass of what the loop did, shown by ``/readyz`` (and kept typed)."""
        ...

    async def run(self) -> None: ...


@dataclass(frozen=True)
class ServiceSpec(Generic[SettingsT, StoreT]):
    """What a service is: its topics, its schema, its settings, store, handlers and loops.

    Building a spec does nothing; ``build_app`` reads the settings and wires it.
    """

    name: str
    schema: str
    description: str
    migrations_dir: Path
    consumes: Sequence[str]
    publishes: Sequence[str]
    settings: type[SettingsT]
    store: StoreFactory[StoreT]
    """The service's store over one transaction's connection (``Postgres<Service>Store``)."""
    handlers: Callable[[SettingsT], Mapping[str, Handler]]
    background: Sequence[Callable[[ServiceRuntime[SettingsT, StoreT]], BackgroundLoop]] = ()


@dataclass
class ServiceRuntime(Generic[SettingsT, StoreT]):
    """What a running service holds; loops reach resources only through it."""

    spec: ServiceSpec[SettingsT, StoreT]
    settings: SettingsT
    broker: KafkaBroker
    pipeline: MessagePipeline | None = None
    relay: OutboxRelay | None = None
    loops: dict[str, BackgroundLoop] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    _pool: asyncpg.Pool | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    failed_loops: list[str] = field(default_factory=list)
    """Background loops given up after crashing again and again: the process is not alive."""
    loop_restarts: dict[str, int] = field(default_factory=dict)
    give_up: Callable[[], None] = field(
        default=functools.partial(signal.raise_signal, signal.SIGTERM)
    )
    """What a service does when a loop is given up: stop (FastStream shuts down on SIGTERM)."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the service stops: loops finish the round in hand and return."""
    _draining: list[asyncio.Task[None]] = field(default_factory=list)

    def begin(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork[StoreT]]:
        """A unit of work over this service's store, in its own transaction."""
        return UnitOfWork.begin(self.pool, self.spec.store)

    @property
    def group_id(self) -> str:
        return f"offramp-{self.spec.name}"

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.spec.name}: the database pool is used before start-up")
        return self._pool

    async def start_resources(self) -> None:
        configure_logging(
            self.spec.name, level=self.settings.log_level, fmt=self.settings.log_format
        )
        settings = self.settings
        if settings.create_topics:
            topics = {*self.spec.consumes, *self.spec.publishes}
            await ensure_topics(
                settings.kafka_bootstrap_servers,
                [
                    replace(TOPIC_BY_NAME[t], name=physical(t, settings.topic_namespace))
                    for t in sorted(topics)
                ],
                replication_factor=settings.topic_replication_factor,
            )
        self._pool = await create_pool(
            settings.database_url,
            schema=self.spec.schema,
            application_name=f"offramp-{self.spec.name}",
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            command_timeout_s=settings.db_command_timeout_s,
        )
        async with self._pool.acquire() as conn:
            await migrate(conn, schema=self.spec.schema, service_dir=self.spec.migrations_dir)

    async def start_background(self) -> None:
        settings = self.settings
        self.relay = OutboxRelay(
            dsn=settings.database_url,
            schema=self.spec.schema,
            producer_factory=lambda: KafkaRelayProducer(
                settings.kafka_bootstrap_servers,
                client_id=self.group_id,
                namespace=settings.topic_namespace,
            ),
            known_topics=[topic.name for topic in TOPICS],
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
        )
        self._supervise("outbox-relay", self.relay.run, drain=True)
        self._supervise("inbox-pruner", self._prune_inbox)
        for make_loop in self.spec.background:
            loop = make_loop(self)
            name = type(loop).__name__
            self.loops[name] = loop
            self._supervise(name, loop.run, drain=True)
        if settings.health_port:
            server = HealthServer(self, port=settings.health_port)
            self._supervise("health", server.run)
        log.info("service_started", group_id=self.group_id, consumes=list(self.spec.consumes))

    async def _prune_inbox(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    while await inbox.prune(
                        conn, older_than_days=self.settings.inbox_retention_days
                    ):
                        pass  # more than one batch to forget
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.warning("inbox_prune_failed", error=repr(exc))
            await asyncio.sleep(INBOX_PRUNE_INTERVAL_S)

    def _supervise(
        self, name: str, loop: Callable[[], Coroutine[Any, Any, None]], *, drain: bool = False
    ) -> None:
        """Run ``loop`` for the life of the service, restarting it with backoff if it ends.

        A loop that keeps crashing is given up after GIVE_UP_AFTER_CRASHES: ``/healthz``
        then fails and the process stops itself, so the orchestrator restarts the pod.
        """
        task = asyncio.create_task(self._keep_running(name, loop), name=f"{self.spec.name}:{name}")
        self._tasks.append(task)
        if drain:  # returns by itself once ``stopping`` is set
            self._draining.append(task)

    async def _keep_running(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        crashes = 0
        backoff = RESTART_BACKOFF_INITIAL_S
        while True:
            started = time.monotonic()
            try:
                await loop()
                error = "the loop returned"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - restarted below, or given up
                error = repr(exc)
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= HEALTHY_RUN_S:
                crashes, backoff = 0, RESTART_BACKOFF_INITIAL_S
            crashes += 1
            self.loop_restarts[name] = self.loop_restarts.get(name, 0) + 1
            if crashes >= GIVE_UP_AFTER_CRASHES:
                self.failed_loops.append(name)
                log.error("background_loop_gave_up", loop=name, crashes=crashes, error=error)
                # Not alive any more: let the orchestrator (or `make run`) start a fresh one.
                self.give_up()
                return
            log.error("background_loop_crashed", loop=name, retry_in_s=backoff, error=error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)

    def alive(self) -> bool:
        """False once a background loop was given up (see ``_supervise``)."""
        return not self.failed_loops and all(not task.done() for task in self._tasks)

    def background_healthy(self) -> bool:
        return self.alive()

    async def begin_stopping(self) -> None:
        """Tell the loops to finish the round in hand and start no new work."""
        self.stopping.set()

    async def stop(self) -> None:
        """Let the relay and the loops finish the round in hand (a send whose provider
        call went through must commit, or another replica sends it again), then stop."""
        self.stopping.set()
        if self.relay is not None:
            self.relay.stop()
        if self._draining:
            _done, late = await asyncio.wait(self._draining, timeout=LOOP_DRAIN_S)
            if late:
                log.warning("loops_not_drained", loops=sorted(t.get_name() for t in late))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pool is not None:
            await self._pool.close()
        log.info("service_stopped")


def build_app(
    spec: ServiceSpec[SettingsT, StoreT], settings: SettingsT | None = None
) -> tuple[FastStream, ServiceRuntime[SettingsT, StoreT]]:
    """Wire ``spec`` into a FastStream app; no I/O happens until the app starts.

    Settings are read from the environment here (unless given), never at import.
    """
    settings = settings or spec.settings()
    broker = create_broker(settings.kafka_bootstrap_servers, client_id=f"offramp-{spec.name}")
    runtime = ServiceRuntime(spec=spec, settings=settings, broker=broker)
    pipeline = MessagePipeline(
        consumer=runtime.group_id,
        schema=spec.schema,
        pool_provider=lambda: runtime.pool,
        store=spec.store,
        handlers=spec.handlers(settings),
        clock=runtime.clock,
        max_attempts=settings.consumer_max_attempts,
        backoff_initial_s=settings.consumer_backoff_initial_s,
        backoff_max_s=settings.consumer_backoff_max_s,
        topic_namespace=settings.topic_namespace,
    )
    runtime.pipeline = pipeline
    subscribe_pipeline(
        broker,
        pipeline,
        topics=spec.consumes,
        group_id=runtime.group_id,
        namespace=settings.topic_namespace,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        fetch_min_bytes=settings.consumer_fetch_min_bytes,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
    )
    # The AsyncAPI document comes from a broker that is never started: it declares each
    # topic this service reads and writes, with that topic's message types.
    docs = KafkaBroker(settings.kafka_bootstrap_servers)
    for topic in spec.consumes:
        document_subscriber(
            docs, topic, group_id=runtime.group_id, namespace=settings.topic_namespace
        )
    for topic in spec.publishes:
        document_publisher(docs, topic, settings.topic_namespace)
    app = FastStream(
        broker,
        on_startup=[runtime.start_resources],
        after_startup=[runtime.start_background],
        # Loops stop starting new work while the broker finishes its batch in hand.
        on_shutdown=[runtime.begin_stopping],
        # After the broker stopped: no batch is in flight when the pool closes.
        after_shutdown=[runtime.stop],
        specification=AsyncAPI(
            docs,
            title=f"Offramp {spec.name}",
            version="1.0.0",
            description=spec.description,
        ),
    )
    return app, runtime


def serve(app: FastStream) -> None:
    """Entry point of ``python -m services.<name>``: run until SIGTERM or Ctrl-C.

    On uvloop: asyncpg and aiokafka spend markedly less CPU per round trip on it.
    """
    uvloop.run(app.run())
