"""Builders of enrollments as trigger-evaluator sees them (``EnrollmentView``), for the pure
decision tests: a contact of ``acme.com`` in workflow ``onboarding`` v3."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.trigger_evaluator.domain import EnrollmentStatus, EnrollmentView, WorkflowTriggers
from shared.contracts import RecordRef, RecordType
from shared.contracts.workflow import DEAL_TRIGGERS, ExitTrigger, WorkflowSettings
from tests.support.builders.enrollment_events import ACCOUNT
from tests.support.builders.inbound_events import CONTACT_C1

CONTACT = CONTACT_C1
COLLEAGUE = RecordRef(type=RecordType.CONTACT, id="c-2")
DEAL = RecordRef(type=RecordType.DEAL, id="d-1")
ORGANIZATION = RecordRef(type=RecordType.ORGANIZATION, id="o-1")
ALL_CONTACT_TRIGGERS = frozenset(ExitTrigger) - DEAL_TRIGGERS


def enrollment_view(
    record: RecordRef = CONTACT,
    *,
    triggers: frozenset[ExitTrigger] = ALL_CONTACT_TRIGGERS,
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE,
    company_domain: str | None = "acme.com",
    unenroll_company_on_reply: bool = False,
    workflow_known: bool = True,
    enrolled_by_user_id: str | None = None,
    account_id: str = ACCOUNT,
    enrolled_at: datetime | None = None,
    settings: WorkflowSettings | None = None,
) -> EnrollmentView:
    return EnrollmentView(
        enrollment_id=uuid.uuid4(),
        account_id=account_id,
        workflow_id="onboarding",
        workflow_version=3,
        record=record,
        status=status,
        workflow=(
            WorkflowTriggers(triggers, unenroll_company_on_reply, settings or WorkflowSettings())
            if workflow_known
            else None
        ),
        email=f"{record.id}@acme.com",
        company_domain=company_domain,
        enrolled_by_user_id=enrolled_by_user_id,
        enrolled_at=enrolled_at,
    )
