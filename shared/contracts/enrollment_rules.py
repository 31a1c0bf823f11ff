"""Account-wide enrollment rules (issue 9, "Enrollment rules"): the exclusivity setting.

The command is on ``offramp.commands.v1``; its answer, ``account.exclusivity_set``, on
``offramp.workflow.events.v1`` (with the account's other settings' answers)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from shared.contracts.base import Actor, Contract, Identifier, Message, RecordRef


class Exclusivity(StrEnum):
    """How many workflows a record may be live (active or paused) in at once, account-wide.

    An enroll that breaks it is rejected (``enrollment.rejected``) with the rule as its
    code and the other workflow named (``Rejection.workflow_id``)."""

    NO_LIMIT = "no_limit"
    """Any number (the default)."""
    ONE_WORKFLOW = "one_workflow"
    """One live workflow at a time, whatever the workflows (code ``in_another_workflow``)."""
    ONE_EXCLUSIVE_WORKFLOW = "one_exclusive_workflow"
    """One *exclusive* workflow (``WorkflowSettings.exclusive``) at a time; others are free
    (code ``in_another_exclusive_workflow``)."""


class SetExclusivityPayload(Contract):
    exclusivity: Exclusivity
    actor: Actor


class SetExclusivity(Message):
    """The account's exclusivity setting (default ``no_limit``); answered by
    ``account.exclusivity_set``. Records already live in several workflows stay: the
    setting rules new enrollments."""

    type: Literal["account.set_exclusivity"] = "account.set_exclusivity"
    payload: SetExclusivityPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/account"


class ExclusivitySetPayload(Contract):
    exclusivity: Exclusivity
    actor: Actor


class AccountExclusivitySet(Message):
    """The account's exclusivity setting changed (answer to ``account.set_exclusivity``)."""

    type: Literal["account.exclusivity_set"] = "account.exclusivity_set"
    payload: ExclusivitySetPayload

    def partition_key(self) -> str:
        return f"{self.account_id}/account"


class DeferredByCapPayload(Contract):
    workflow_id: Identifier
    record: RecordRef
    actor: Actor
    cap: int = Field(ge=1, description="The workflow's daily enrollment cap.")
    day: date = Field(description="The local day (workflow time zone) it will be admitted on.")
    release_at: AwareDatetime = Field(description="When that day starts: decided from then.")


class EnrollmentDeferredByCap(Message):
    """An enroll over its workflow's daily cap waits for the next day, in order (answer to
    ``enrollment.enroll`` / ``enrollment.bulk_enroll``); it is decided then, and answered
    ``enrollment.enrolled`` or ``enrollment.rejected`` (or deferred again if that day is
    full too)."""

    type: Literal["enrollment.deferred_by_cap"] = "enrollment.deferred_by_cap"
    payload: DeferredByCapPayload


RULE_COMMANDS: tuple[type[Message], ...] = (SetExclusivity,)
RULE_EVENTS: tuple[type[Message], ...] = (AccountExclusivitySet,)
RULE_ENROLLMENT_EVENTS: tuple[type[Message], ...] = (EnrollmentDeferredByCap,)
