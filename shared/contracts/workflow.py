"""Workflow definitions: the steps a record goes through and the settings that end it."""

from __future__ import annotations

from datetime import date, time
from enum import IntEnum, StrEnum

from pydantic import Field, field_validator, model_validator

from shared.contracts.base import Contract, Identifier, RecordType, TimeZoneName
from shared.contracts.inbound import Channel
from shared.contracts.trigger_settings import (
    ConversationSettings,
    FieldRule,
    LinkClickSettings,
    OutOfOfficeSettings,
    UrlRule,
)


class ExitTrigger(StrEnum):
    """Automatic exit triggers a workflow can turn on (see PRODUCT.md, Exits)."""

    LINK_CLICKED = "link_clicked"
    REPLIED = "replied"
    NEW_CONVERSATION = "new_conversation"
    PAGE_VISITED = "page_visited"
    HARD_BOUNCED = "hard_bounced"
    UNSUBSCRIBED = "unsubscribed"
    MEETING_BOOKED = "meeting_booked"
    FIELD_CHANGED = "field_changed"
    MESSAGE_RECEIVED = "message_received"
    MESSAGE_SENT_BY_PERSON = "message_sent_by_person"
    USER_ASSIGNED = "user_assigned"
    UNENROLLED_BY_OTHER_WORKFLOW = "unenrolled_by_other_workflow"
    DEAL_WON = "deal_won"
    DEAL_LOST = "deal_lost"
    DEAL_OPENED = "deal_opened"
    DEAL_STAGE_ENTERED = "deal_stage_entered"


DEAL_TRIGGERS = frozenset(
    {
        ExitTrigger.DEAL_WON,
        ExitTrigger.DEAL_LOST,
        ExitTrigger.DEAL_OPENED,
        ExitTrigger.DEAL_STAGE_ENTERED,
    }
)

TRIGGERS_BY_RECORD_TYPE: dict[RecordType, frozenset[ExitTrigger]] = {
    RecordType.CONTACT: frozenset(ExitTrigger) - DEAL_TRIGGERS,
    RecordType.ORGANIZATION: frozenset({ExitTrigger.FIELD_CHANGED}),
    RecordType.DEAL: DEAL_TRIGGERS | {ExitTrigger.FIELD_CHANGED},
}


class ReenrollmentPolicy(StrEnum):
    """What an enroll of a record that was, or is, in the workflow does.

    A record is live (active or paused) in a workflow at most once, so:

    - ``never``: one enrollment per record, ever; any earlier one refuses the enroll
      (``reenrollment_not_allowed``, or ``already_enrolled`` while it is live).
    - ``when_not_active``: again once the earlier enrollment ended (completed or exited);
      while it is live the enroll is refused (``already_enrolled``).
    - ``anytime``: as ``when_not_active`` once it ended; while it is live the enroll
      restarts it: the live enrollment exits (reason ``reenrolled``, source ``workflow``)
      and the record enters the current version at its first step. While one of its steps
      is being sent, or it is already exiting, the enroll is refused (``already_enrolled``).

    ``min_days_between_enrollments`` applies to the last two: it counts from the start of
    the record's latest enrollment in the workflow (``reenrollment_too_soon``).
    """

    NEVER = "never"
    WHEN_NOT_ACTIVE = "when_not_active"
    ANYTIME = "anytime"


class Step(Contract):
    """One step: wait ``delay_seconds`` after the previous step (or enrollment), then send."""

    step_id: Identifier
    channel: Channel = Channel.EMAIL
    delay_seconds: int = Field(0, ge=0, le=366 * 24 * 3600)
    subject: str | None = Field(None, max_length=998)
    body: str = Field(max_length=100_000)
    sender: str | None = Field(None, max_length=320, description="Sending mailbox or number.")


class Weekday(IntEnum):
    """ISO weekday numbers: Monday is 1, Sunday is 7."""

    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


class SendWindow(Contract):
    """When a workflow may send, in the record's local time (see PRODUCT.md, send windows).

    A step due outside the window is planned at the next opening. Local times that a DST
    change skips open at the first valid instant after the gap; a repeated local time is
    taken at its first occurrence.
    """

    weekdays: frozenset[Weekday] = Field(
        frozenset(Weekday) - {Weekday.SATURDAY, Weekday.SUNDAY},
        min_length=1,
        description="ISO weekdays (1 = Monday ... 7 = Sunday) the workflow sends on.",
    )
    start: time = Field(time(9, 0), description="Local time the window opens (inclusive).")
    end: time = Field(time(17, 0), description="Local time the window closes (exclusive).")
    time_zone: TimeZoneName = Field(
        "UTC", description="IANA time zone of records whose own time zone is unknown."
    )
    holidays: frozenset[date] = Field(
        frozenset(), max_length=1000, description="Local dates the workflow never sends on."
    )

    @field_validator("start", "end")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("window hours are local times: give no offset")
        return value

    @model_validator(mode="after")
    def _order(self) -> SendWindow:
        if self.start >= self.end:
            raise ValueError("the window's start must be before its end (same day)")
        return self


class WorkflowSettings(Contract):
    exit_triggers: frozenset[ExitTrigger] = frozenset()
    reenrollment: ReenrollmentPolicy = Field(
        ReenrollmentPolicy.NEVER,
        description="`never`: once per record; `when_not_active`: again once the last one "
        "ended; `anytime`: also while live (the live one exits `reenrolled` and the record "
        "starts over).",
    )
    min_days_between_enrollments: int = Field(
        0,
        ge=0,
        le=3650,
        description="Days from the start of a record's latest enrollment before it may "
        "enter again (0: no minimum).",
    )
    unenroll_company_on_reply: bool = False
    agents_may_stop: bool = True
    exclusive: bool = False
    out_of_office: OutOfOfficeSettings = OutOfOfficeSettings()
    page_rules: tuple[UrlRule, ...] = Field(
        (),
        max_length=50,
        description="Page visited: the URL rules, any of which exits (none: any page).",
    )
    field_rules: tuple[FieldRule, ...] = Field(
        (),
        max_length=50,
        description="Field set or updated: the fields (with conditions), any of which exits "
        "(none: any field).",
    )
    link_clicks: LinkClickSettings = LinkClickSettings()
    conversations: ConversationSettings = ConversationSettings()
    deal_stages: tuple[Identifier, ...] = Field(
        (),
        max_length=50,
        description="Deal entered a stage: the stages (internal values) that exit.",
    )
    exits_workflows_on_enroll: tuple[Identifier, ...] = Field(
        (),
        max_length=50,
        description="Enrolling a record here exits it from these workflows (those that "
        "turned on unenrolled_by_other_workflow).",
    )
    exits_workflows_on_exit: tuple[Identifier, ...] = Field(
        (),
        max_length=50,
        description="A record exiting this workflow exits these workflows too (those that "
        "turned on unenrolled_by_other_workflow).",
    )
    exit_company_on_deal_opened: bool = Field(
        False,
        description="Contact workflows: a deal opening at a company exits every enrollment "
        "of that company's contacts.",
    )
    send_window: SendWindow | None = Field(
        None, description="When steps may be sent; null: any time."
    )
    daily_enrollment_cap: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="New enrollments a day (the send window's time zone, else UTC); "
        "enrolls over it wait for the next day, in order (`enrollment.deferred_by_cap`). "
        "Null: no cap.",
    )


class WorkflowDefinition(Contract):
    """What ``workflow.apply`` carries. Applying a changed definition creates a version."""

    workflow_id: Identifier
    name: str = Field(min_length=1, max_length=200)
    record_type: RecordType
    owner_user_id: Identifier | None = None
    steps: tuple[Step, ...] = Field(min_length=1, max_length=100)
    settings: WorkflowSettings = WorkflowSettings()

    @model_validator(mode="after")
    def _check(self) -> WorkflowDefinition:
        ids = [step.step_id for step in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError("step_id values must be unique within a workflow")
        allowed = TRIGGERS_BY_RECORD_TYPE[self.record_type]
        settings = self.settings
        if wrong := sorted(settings.exit_triggers - allowed):
            raise ValueError(
                f"exit triggers {wrong} do not apply to {self.record_type.value} workflows"
            )
        on = settings.exit_triggers
        # A rule of a trigger that is off would never fire: say so instead of ignoring it.
        for rules, trigger in (
            (settings.page_rules, ExitTrigger.PAGE_VISITED),
            (settings.field_rules, ExitTrigger.FIELD_CHANGED),
            (settings.deal_stages, ExitTrigger.DEAL_STAGE_ENTERED),
        ):
            if rules and trigger not in on:
                raise ValueError(f"rules are set for {trigger.value}, which is not turned on")
        if ExitTrigger.DEAL_STAGE_ENTERED in on and not settings.deal_stages:
            raise ValueError("deal_stage_entered needs the stages that exit (deal_stages)")
        named = {*settings.exits_workflows_on_enroll, *settings.exits_workflows_on_exit}
        if self.workflow_id in named:
            raise ValueError("a workflow cannot exit records from itself")
        if settings.exit_company_on_deal_opened and self.record_type is not RecordType.CONTACT:
            raise ValueError("exit_company_on_deal_opened applies to contact workflows only")
        return self
