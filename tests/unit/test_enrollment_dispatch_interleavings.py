"""Any interleaving of grants, exits, pauses and messaging's answers, against messaging as
designed: no provider call starts after an exit commits, and every exit commits once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.enrollment.dispatch import (
    Granted,
    decide_grant,
    decide_renewal,
    lapse_exit,
)
from services.enrollment.domain import Dispatch, Enrollment, Status, Unchanged
from services.enrollment.exits import (
    Exited,
    ExitPending,
    decide_exit,
)
from services.enrollment.pauses import Paused, Resumed, decide_pause, decide_resume
from services.enrollment.steps import Complete, Settled, on_step_sent, on_step_unsent
from shared.contracts import SYSTEM_ACTOR
from shared.contracts.commands import ExitReason, ExitSource
from shared.contracts.events import CancelReason, FailureKind
from tests.support.builders.enrollment_dispatch import (
    LEASE,
    REPLY,
    SKEW,
)
from tests.support.builders.enrollment_dispatch_decisions import (
    HOUR,
    OUTCOME,
    THREE_STEPS,
    USER,
    due,
    sent,
    unsent,
)
from tests.support.builders.enrollment_domain import (
    NOW,
    enrollment,
    workflow,
)

pytestmark = pytest.mark.unit

# --- any interleaving, against messaging as designed -------------------------------------
#
# One enrollment, and messaging as docs/dispatch-messaging.md designs it: it reads
# enrollment's events in order (one partition: grants, revokes, pauses, resumes, ends), it
# queues one send per step, re-arms a send cancelled for a pause when a grant of it comes,
# starts a call only for a pending send of an active enrollment under a valid lease, asks
# for a renewal when the lease lapsed, and answers every grant. Its answers reach
# enrollment at once; enrollment's events reach messaging when it gets to them.

PENDING, WAITING, SENDING, PAUSE_CANCELLED, DONE = (
    "pending",
    "waiting",
    "sending",
    "pause_cancelled",
    "done",
)
UNSTARTED = (PENDING, WAITING)


@dataclass
class _Send:
    dispatch_id: uuid.UUID
    lease_until: datetime
    status: str = PENDING


@dataclass
class _World:
    e: Enrollment = field(default_factory=lambda: enrollment(next_due_at=NOW))
    now: datetime = NOW
    sends: dict[int, _Send] = field(default_factory=dict)
    """Messaging's sends, by step."""
    seen: str = "active"
    """The enrollment as messaging last heard of it: active, paused or ended."""
    inbox: list[tuple[str, Dispatch | None]] = field(default_factory=list)
    """Enrollment's events messaging has not read yet, in order."""
    exits: int = 0

    # enrollment's side

    def apply(self, decision: object) -> None:
        if isinstance(decision, Unchanged):
            return
        assert self.e.status.live, "an ended enrollment changed"
        if isinstance(decision, Settled) and decision.enrollment.status is Status.ACTIVE:
            # As the handler does: the step of an enrollment resumed meanwhile is granted again.
            current = decision.enrollment
            again = decide_grant(
                current,
                due(current.current_step),
                dispatch_id=uuid.uuid4(),
                lease=LEASE,
                now=self.now,
            )
            if isinstance(again, Granted):
                decision = again
        match decision:
            case Granted():
                self.inbox.append(("grant", decision.dispatch))
            case ExitPending():
                self.inbox.append(("revoke", decision.dispatch))
            case Paused():
                self.inbox.append(("paused", None))
            case Resumed():
                self.inbox.append(("resumed", None))
            case Exited() | Complete():
                self.exits += isinstance(decision, Exited)
                self.inbox.append(("ended", None))
        self.e = decision.enrollment  # type: ignore[attr-defined]

    def enrollment_acts(self, action: str) -> None:
        e = self.e
        if action == "due":
            self.apply(
                decide_grant(
                    e, due(e.current_step), dispatch_id=uuid.uuid4(), lease=LEASE, now=self.now
                )
            )
        elif action == "exit":
            self.apply(
                decide_exit(
                    e,
                    reason=ExitReason.REPLIED,
                    source=ExitSource.TRIGGER,
                    actor=SYSTEM_ACTOR,
                    triggering_event=REPLY,
                    agents_may_stop=True,
                    now=self.now,
                )
            )
        elif action == "pause":
            self.apply(decide_pause(e, until=None, reason="ooo", actor=USER, pause_id=uuid.uuid4()))
        elif action == "resume":
            self.apply(decide_resume(e, workflow(0, HOUR, HOUR), actor=USER, now=self.now))
        elif action == "lapse":
            self.apply(lapse_exit(e, skew=SKEW, now=self.now))

    # messaging's answers, heard by enrollment at once

    def sent(self, step: int) -> None:
        self.apply(on_step_sent(self.e, THREE_STEPS, sent(step), now=self.now))

    def unsent(self, step: int, kind: FailureKind | CancelReason) -> None:
        self.apply(on_step_unsent(self.e, unsent(kind, step), trigger=OUTCOME, now=self.now))

    def deferred(self, step: int, send: _Send, seconds: int) -> None:
        decision = decide_renewal(
            self.e,
            due(step),
            dispatch_id=send.dispatch_id,
            lapsed=send.lease_until,
            next_attempt_at=self.now + timedelta(seconds=seconds),
            lease=LEASE,
            now=self.now,
        )
        self.apply(decision)

    # messaging's side

    def read_one(self) -> None:
        kind, granted = self.inbox.pop(0)
        if granted is not None:
            send = self.sends.get(granted.step_index)
            if kind == "grant":
                if send is None:
                    self.sends[granted.step_index] = _Send(granted.dispatch_id, granted.lease_until)
                elif send.status == PAUSE_CANCELLED or (
                    send.status in (*UNSTARTED, SENDING) and granted.lease_until > send.lease_until
                ):
                    send.dispatch_id, send.lease_until = granted.dispatch_id, granted.lease_until
                    send.status = SENDING if send.status == SENDING else PENDING
            elif send is None or send.status in UNSTARTED:
                if send is not None:
                    send.status = DONE
                self.unsent(granted.step_index, CancelReason.DISPATCH_REVOKED)
            return
        self.seen = {"paused": "paused", "resumed": "active", "ended": "ended"}[kind]
        if kind != "resumed":
            self._cancel_unstarted()

    def _cancel_unstarted(self) -> None:
        paused = self.seen == "paused"
        reason = CancelReason.ENROLLMENT_PAUSED if paused else CancelReason.ENROLLMENT_EXITED
        for step, send in sorted(self.sends.items()):
            if send.status in UNSTARTED:
                send.status = PAUSE_CANCELLED if paused else DONE
                self.unsent(step, reason)

    def messaging_acts(self, action: str, seconds: int) -> None:
        for step, send in sorted(self.sends.items()):
            if action == "claim" and send.status == PENDING:
                if self.seen != "active":
                    self._cancel_unstarted()
                elif self.now >= send.lease_until:
                    send.status = WAITING
                    self.deferred(step, send, seconds)
                else:
                    assert self.exits == 0, "a provider call started after the exit committed"
                    send.status = SENDING
            elif action in ("sent", "failed") and send.status == SENDING:
                send.status = DONE
                if action == "sent":
                    self.sent(step)
                else:
                    self.unsent(step, FailureKind.REJECTED)
            else:
                continue
            return

    def step(self, action: str, seconds: int) -> None:
        if action == "tick":
            self.now += timedelta(seconds=seconds)
        elif action == "read":
            if self.inbox:
                self.read_one()
        elif action in ("claim", "sent", "failed"):
            self.messaging_acts(action, seconds)
        else:
            self.enrollment_acts(action)


ACTIONS = (
    "tick",
    "due",
    "exit",
    "pause",
    "resume",
    "lapse",
    "read",
    "claim",
    "sent",
    "failed",
)
Script = list[tuple[str, int]]

PAUSED_DEFERRAL = [
    ("due", 0),
    ("read", 0),  # messaging queues the grant
    ("pause", 0),
    ("tick", 121),  # messaging was behind: the lease lapsed before it read the pause
    ("claim", 0),  # -> message.deferred: enrollment (paused) renews the grant
    ("read", 0),  # the pause: messaging cancels the send -> enrollment settles the grant
    ("read", 0),  # the renewal: re-arms the send cancelled for the pause
    ("resume", 0),
    ("exit", 0),  # no grant is out: the exit commits at once
    ("read", 0),  # the resume
    ("claim", 0),  # the re-armed send starts under the renewed lease
]
"""A paused enrollment's grant renewed after messaging cancelled it for the pause."""


@example(script=PAUSED_DEFERRAL)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 200)), max_size=40))
def test_no_call_starts_after_the_exit_commits_and_an_exit_commits_once(script: Script) -> None:
    world = _World()
    for action, seconds in script:
        world.step(action, seconds)
    assert world.exits <= 1
    # An exit that waits always ends: messaging answers, or the lease lapses.
    if world.e.exiting:
        while world.inbox:
            world.step("read", 0)
        world.step("sent", 0)
        world.step("tick", int((LEASE + SKEW).total_seconds()) + 1)
        world.step("lapse", 0)
        assert world.e.status is Status.EXITED
        assert world.exits == 1
