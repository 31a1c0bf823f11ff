"""Every Offramp topic: its name, partition count, who writes it and what it carries.

Topic names are versioned (`.v1`): a breaking change to a topic's contract creates a new
topic, so subscribers move at their own pace. All topics are keyed by
``<account_id>/<record type>/<record id>`` (workflow messages by
``<account_id>/workflow/<workflow id>``), so one record's messages stay in order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    producer: str
    description: str
    retention_ms: int | None = None


DAY_MS = 24 * 60 * 60 * 1000

INBOUND_EMAIL = "offramp.inbound.email.v1"
INBOUND_WEB = "offramp.inbound.web.v1"
INBOUND_CRM = "offramp.inbound.crm.v1"
INBOUND_CONVERSATION = "offramp.inbound.conversation.v1"
COMMANDS = "offramp.commands.v1"
WORKFLOW_EVENTS = "offramp.workflow.events.v1"
ENROLLMENT_EVENTS = "offramp.enrollment.events.v1"
SCHEDULER_STEPS = "offramp.scheduler.steps.v1"
MESSAGING_EVENTS = "offramp.messaging.events.v1"
DEAD_LETTER = "offramp.deadletter.v1"
EXCLUSION_EVENTS = "offramp.exclusion.events.v1"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        INBOUND_EMAIL,
        6,
        "upstream email platforms",
        "Replies, link clicks, bounces, unsubscribes, opens and new threads.",
    ),
    TopicSpec(INBOUND_WEB, 6, "upstream web tracking", "Page visits of known visitors."),
    TopicSpec(
        INBOUND_CRM,
        6,
        "upstream CRMs",
        "Record data (contacts, organizations and deals: fields, emails, domains, "
        "associations, deal stages), field changes, deals won and lost, meetings, owner "
        "assignment, user changes.",
    ),
    TopicSpec(
        INBOUND_CONVERSATION,
        6,
        "upstream chat and inbox tools",
        "Incoming and person-sent messages, agent assignment.",
    ),
    TopicSpec(
        COMMANDS,
        6,
        "UIs, the operator CLI, trigger-evaluator, scheduler",
        "Workflow definitions and manual or automatic enrollment actions (the scheduler "
        "resumes timed pauses).",
    ),
    TopicSpec(
        WORKFLOW_EVENTS,
        3,
        "enrollment",
        "Workflow lifecycle: each applied version of a workflow definition.",
        # Kept forever: a new consumer rebuilds every version still in use from here.
        retention_ms=-1,
    ),
    TopicSpec(
        ENROLLMENT_EVENTS,
        6,
        "enrollment",
        "Who entered, progressed, paused, completed or left which workflow, and why.",
    ),
    TopicSpec(SCHEDULER_STEPS, 6, "scheduler", "Steps whose time has come."),
    TopicSpec(
        MESSAGING_EVENTS,
        6,
        "messaging",
        "Messages sent (with their provider Message-ID), cancelled or failed.",
    ),
    TopicSpec(
        EXCLUSION_EVENTS,
        3,
        "enrollment",
        "Exclusion rules' versions, rulesets, uploaded lists, and rejected exclusion commands.",
        # Kept forever, like workflow versions: every decision names a rule version.
        retention_ms=-1,
    ),
    TopicSpec(
        DEAD_LETTER,
        3,
        "every service",
        "Input no consumer could apply, with the reason; nothing is dropped silently.",
        retention_ms=30 * DAY_MS,
    ),
)

TOPIC_BY_NAME = {spec.name: spec for spec in TOPICS}


def physical(name: str, namespace: str) -> str:
    """The topic's name on the cluster: ``OFFRAMP_TOPIC_NAMESPACE`` + its contract name.

    A namespace lets several Offramp environments (or test runs) share one cluster.
    """
    return f"{namespace}{name}"


def logical(topic: str, namespace: str) -> str:
    """The contract name of a topic read from the cluster."""
    return topic.removeprefix(namespace)
