-- Messaging owns sends and their provider Message-IDs. It keeps two projections of other
-- services' events (workflow steps, enrollment status) so that it can render a due step
-- and re-check the enrollment at send time without asking anyone.

-- Steps of every applied workflow version, from workflow.applied. A version never changes.
CREATE TABLE workflow_steps (
    account_id  text NOT NULL,
    workflow_id text NOT NULL,
    version     int  NOT NULL,
    step_index  int  NOT NULL,
    step_id     text NOT NULL,
    channel     text NOT NULL,
    subject     text,
    body        text NOT NULL,
    sender      text,
    PRIMARY KEY (account_id, workflow_id, version, step_index)
);

-- Enrollment status, from enrolled/paused/resumed/completed/exited. The sender share-locks
-- a row while it sends, so an exit applied here waits for the sends it could not stop and
-- every later claim sees it.
CREATE TABLE enrollments (
    enrollment_id    uuid        PRIMARY KEY,
    account_id       text        NOT NULL,
    workflow_id      text        NOT NULL,
    workflow_version int         NOT NULL,
    record_type      text        NOT NULL,
    record_id        text        NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('active', 'paused', 'completed', 'exited')),
    recipient_email  text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per (enrollment, step): a step is sent at most once per enrollment.
CREATE TABLE sends (
    enrollment_id       uuid        NOT NULL,
    step_index          int         NOT NULL,
    account_id          text        NOT NULL,
    workflow_id         text        NOT NULL,
    workflow_version    int         NOT NULL,
    record_type         text        NOT NULL,
    record_id           text        NOT NULL,
    step_id             text        NOT NULL,
    channel             text        NOT NULL,
    sender              text        NOT NULL,
    recipient           text,
    subject             text        NOT NULL,
    body                text        NOT NULL,
    provider_message_id text        NOT NULL,
    status              text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'cancelled', 'failed')),
    cancel_reason       text,
    attempts            int         NOT NULL DEFAULT 0,
    last_error          text,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    cause_message_id    uuid,
    correlation_id      uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    finished_at         timestamptz,
    PRIMARY KEY (enrollment_id, step_index)
);
-- The sender scans only pending rows; a partial index keeps that scan small however many
-- sends are done.
CREATE INDEX sends_pending_due ON sends (next_attempt_at) WHERE status = 'pending';
