"""Parking: inbound events that wait for what this service has not projected yet. Pure.

The topics trigger-evaluator reads are not ordered with each other: a reply can be read
before the ``enrollment.enrolled`` of the enrollment it exits, before the ``message.sent``
it quotes, or before the ``workflow.applied`` of its enrollment's version. Such an event
(``domain.Waiting``) is parked with the keys that would unblock it, and evaluated again
when a projection event brings one of those keys (``keys_brought_by``), in the same
transaction; a background loop looks at each once shortly after it was parked (another
replica may have projected its enrollment meanwhile) and releases it after
``OFFRAMP_PARK_MAX_S``: decided as matching nothing, and dead-lettered with the reason.

A key is ``<account>|<kind>|<value>``: it names the account, so one key never unblocks
another account's event, and the keys only ever choose what to evaluate again (the
evaluation itself decides).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.trigger_evaluator.domain import Waiting, WorkflowKey
from services.trigger_evaluator.triggers import Signal, normalize_message_id
from shared.contracts import Message, RecordRef
from shared.contracts.events import EnrollmentEnrolled, MessageSent, WorkflowApplied
from shared.contracts.workflow import ExitTrigger

DEFAULT_PARK_MAX = timedelta(hours=1)
RECHECK_AFTER = timedelta(seconds=5)
"""A parked event is evaluated once more this long after parking (or at expiry, if that
comes first): its enrollment may have been projected meanwhile by another replica, whose
transaction this one could not see."""

DEAD_LETTER_KIND = "parking_expired"
"""The error kind of an event released from parking (``offramp deadletters --kind``)."""


def _key(account_id: str, kind: str, value: str) -> str:
    return f"{account_id}|{kind}|{value}"


def record_key(account_id: str, record: RecordRef) -> str:
    return _key(account_id, "record", f"{record.type.value}/{record.id}")


def address_key(account_id: str, address: str) -> str:
    return _key(account_id, "address", address)


def thread_key(account_id: str, message_id: str) -> str:
    return _key(account_id, "thread", message_id)


def workflow_key(account_id: str, workflow: WorkflowKey) -> str:
    return _key(account_id, "workflow", f"{workflow[0]}/{workflow[1]}")


def waiting_keys(waiting: Waiting) -> tuple[str, ...]:
    """What would unblock ``waiting``: its workflow versions, or else whatever its lookup
    would find an enrollment by (records, attendees, addresses, quoted Message-IDs).

    A company is not a key: colleagues are found through the replier's own enrollment,
    which the replier's address and record already wait for.
    """
    account_id = waiting.event.account_id
    if waiting.workflow_versions:
        return tuple(workflow_key(account_id, w) for w in waiting.workflow_versions)
    return _lookup_keys(waiting.event)


def _lookup_keys(signal: Signal) -> tuple[str, ...]:
    account_id, lookup = signal.account_id, signal.lookup
    keys = [
        *(record_key(account_id, r) for r in (*lookup.records, *lookup.attendees)),
        *(address_key(account_id, a) for a in lookup.addresses),
        *(thread_key(account_id, m) for m in lookup.sent_message_ids),
    ]
    return tuple(dict.fromkeys(keys))


def keys_brought_by(events: Iterable[Message]) -> list[str]:
    """The keys a run of projection events brings: the parked events they may unblock.

    Only a new enrollment (its record and addresses), a sent email (its Message-ID) and a
    workflow version can; a status change never makes an event match.
    """
    keys: dict[str, None] = {}
    for event in events:
        account_id = event.account_id
        if isinstance(event, EnrollmentEnrolled):
            keys[record_key(account_id, event.payload.record)] = None
            contact = event.payload.contact
            if contact is not None:
                for address in (contact.email, *contact.aliases):
                    if address:
                        keys[address_key(account_id, address)] = None
        elif isinstance(event, MessageSent):
            message_id = normalize_message_id(event.payload.provider_message_id)
            if message_id is not None:
                keys[thread_key(account_id, message_id)] = None
        elif isinstance(event, WorkflowApplied):
            workflow = (event.payload.definition.workflow_id, event.payload.version)
            keys[workflow_key(account_id, workflow)] = None
    return list(keys)


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """An inbound event waiting in this service's ``parked_events`` table."""

    event: Message
    """The inbound event itself, as it was read."""
    keys: tuple[str, ...]
    why: str
    parked_at: datetime
    expires_at: datetime
    """When it is released if nothing unblocked it."""
    check_at: datetime
    """When the background loop evaluates it again (at the latest: ``expires_at``)."""
    only_if_a_workflow_exits_on: ExitTrigger | None = None
    or_exits_on: tuple[ExitTrigger, ...] = ()
    """Further triggers that make it worth parking (an event that fires several: a deal's
    stage change)."""
    """Parked only if a workflow version of the account exits on this trigger (or the
    account has no version yet): what matched no enrollment is otherwise decided at once,
    since no enrollment to come could exit on it. None: parked whatever the workflows."""

    @property
    def account_id(self) -> str:
        return self.event.account_id

    @property
    def key(self) -> tuple[str, str]:
        """(account, inbound message id), the row's identity."""
        return (self.event.account_id, str(self.event.message_id))

    def still(self, waiting: Waiting, *, now: datetime) -> ParkedEvent:
        """This event parked on, waiting as ``waiting`` says; looked at again at expiry
        once the check it was due for has been made."""
        check_at = self.expires_at if self.check_at <= now else self.check_at
        return replace(
            self,
            keys=waiting_keys(waiting),
            why=waiting.why,
            check_at=check_at,
            only_if_a_workflow_exits_on=None,
            or_exits_on=(),
        )


def in_parking_order(parked: Iterable[ParkedEvent]) -> list[ParkedEvent]:
    """Parked events are evaluated again in the order they were parked."""
    return sorted(parked, key=lambda p: (p.parked_at, *p.key))


def park(
    waiting: Waiting,
    event: Message,
    *,
    now: datetime,
    max_wait: timedelta = DEFAULT_PARK_MAX,
) -> ParkedEvent:
    """``event`` parked at ``now`` for at most ``max_wait``, waiting as ``waiting`` says."""
    # An automatic reply waits like a reply; an event firing several triggers (a deal's
    # stage change) is kept if a workflow exits on any of them.
    fired = waiting.event.rules if waiting.for_an_enrollment else ()
    expires_at = now + max_wait
    return ParkedEvent(
        event=event,
        keys=waiting_keys(waiting),
        why=waiting.why,
        parked_at=now,
        expires_at=expires_at,
        check_at=min(now + RECHECK_AFTER, expires_at),
        only_if_a_workflow_exits_on=fired[0].trigger if fired else None,
        or_exits_on=tuple(r.trigger for r in fired[1:]),
    )


def released_why(parked: ParkedEvent, waiting: Waiting) -> str:
    """Why an event is released: what it waited for, and how long."""
    waited = round((parked.expires_at - parked.parked_at).total_seconds())
    return f"released after waiting {waited} s: {waiting.why}"
