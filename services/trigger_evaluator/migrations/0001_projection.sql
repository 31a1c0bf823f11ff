-- trigger-evaluator's own view of workflows, enrollments and sent emails, built from the
-- workflow, enrollment and messaging topics, plus the record of every decision it made.
-- No foreign keys between them: the topics are not ordered with each other, so a row may
-- arrive before the row it refers to.

-- The exit settings of each workflow version (from workflow.applied; versions never change).
CREATE TABLE workflow_versions (
    account_id                text        NOT NULL,
    workflow_id               text        NOT NULL,
    version                   int         NOT NULL,
    record_type               text        NOT NULL,
    exit_triggers             text[]      NOT NULL,
    unenroll_company_on_reply boolean     NOT NULL,
    applied_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, workflow_id, version)
);

-- One row per enrollment (from enrollment.enrolled and the lifecycle events). 'ended' is
-- final: an exit or completion replayed out of order must never revive an enrollment.
CREATE TABLE enrollments (
    enrollment_id       uuid        PRIMARY KEY,
    account_id          text        NOT NULL,
    workflow_id         text        NOT NULL,
    workflow_version    int         NOT NULL,
    record_type         text        NOT NULL,
    record_id           text        NOT NULL,
    email               text,
    aliases             text[]      NOT NULL DEFAULT '{}',
    company_domain      text,
    enrolled_by_user_id text,
    status              text        NOT NULL CHECK (status IN ('active', 'paused', 'ended')),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrollments_by_record ON enrollments (account_id, record_type, record_id);
CREATE INDEX enrollments_by_email ON enrollments (account_id, email) WHERE email IS NOT NULL;
-- Aliases are matched with && (array overlap), which only a GIN index serves.
CREATE INDEX enrollments_by_alias ON enrollments USING gin (aliases);
-- Company replies only ever look for live enrollments; ended ones pile up over the years.
CREATE INDEX enrollments_live_by_company ON enrollments (account_id, company_domain)
    WHERE status IN ('active', 'paused') AND company_domain IS NOT NULL;

-- Emails Offramp sent (from message.sent): a reply quoting one leads to its enrollment.
-- Message-IDs are stored without angle brackets.
CREATE TABLE sent_messages (
    account_id          text        NOT NULL,
    provider_message_id text        NOT NULL,
    enrollment_id       uuid        NOT NULL,
    sent_at             timestamptz NOT NULL,
    PRIMARY KEY (account_id, provider_message_id)
);

-- Every decision, for explanations: which inbound event, which enrollment (none when the
-- event concerned no enrollment or can never exit), which trigger, exit or ignored, why.
CREATE TABLE decisions (
    id                 bigserial   PRIMARY KEY,
    account_id         text        NOT NULL,
    inbound_message_id uuid        NOT NULL,
    inbound_type       text        NOT NULL,
    enrollment_id      uuid,
    record_type        text,
    record_id          text,
    trigger            text,
    matched_by         text,
    decision           text        NOT NULL CHECK (decision IN ('exit', 'ignored')),
    reason             text,
    why                text        NOT NULL,
    exit_message_id    uuid,
    decided_at         timestamptz NOT NULL DEFAULT now()
);
-- One decision per event and enrollment (and one event-level decision), however often
-- the event is re-applied.
CREATE UNIQUE INDEX decisions_once
    ON decisions (account_id, inbound_message_id, enrollment_id) NULLS NOT DISTINCT;
CREATE INDEX decisions_by_enrollment ON decisions (enrollment_id) WHERE enrollment_id IS NOT NULL;
CREATE INDEX decisions_by_record ON decisions (account_id, record_type, record_id, decided_at);
