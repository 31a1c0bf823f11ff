"""Builders of what trigger-evaluator's projection keeps besides enrollments: workflow
versions with their exit settings, and sent emails a reply may quote."""

from __future__ import annotations

from typing import Any

from shared.contracts import RecordType
from shared.contracts.events import (
    EnrollmentEnrolled,
    MessageSent,
    MessageSentPayload,
    WorkflowApplied,
    WorkflowAppliedPayload,
)
from shared.contracts.inbound import Channel
from shared.contracts.workflow import ExitTrigger, Step, WorkflowDefinition, WorkflowSettings
from tests.support.builders.enrollment_events import ACCOUNT, T0, USER, ref_of


def workflow_applied(
    *,
    workflow_id: str = "onboarding",
    version: int = 1,
    triggers: frozenset[ExitTrigger] = frozenset({ExitTrigger.REPLIED}),
    unenroll_company_on_reply: bool = False,
    account: str = ACCOUNT,
    record_type: RecordType = RecordType.CONTACT,
    **settings: Any,
) -> WorkflowApplied:
    """A workflow version; ``settings`` are further ``WorkflowSettings`` (trigger rules)."""
    definition = WorkflowDefinition(
        workflow_id=workflow_id,
        name="Onboarding",
        record_type=record_type,
        steps=(Step(step_id="hello", body="Hello"),),
        settings=WorkflowSettings(
            exit_triggers=triggers, unenroll_company_on_reply=unenroll_company_on_reply, **settings
        ),
    )
    return WorkflowApplied.create(
        account_id=account,
        payload=WorkflowAppliedPayload(version=version, definition=definition, actor=USER),
    )


def message_sent(enrollment: EnrollmentEnrolled, provider_message_id: str) -> MessageSent:
    """The first step's email of ``enrollment``, sent with ``provider_message_id``."""
    contact = enrollment.payload.contact
    return MessageSent.create(
        account_id=enrollment.account_id,
        payload=MessageSentPayload(
            **ref_of(enrollment),
            step_index=0,
            step_id="hello",
            channel=Channel.EMAIL,
            provider_message_id=provider_message_id,
            recipient=contact.email if contact and contact.email else "",
            sent_at=T0,
        ),
    )
