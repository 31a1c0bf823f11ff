-- Workflows are versioned: applying a changed definition adds a version; enrollments
-- keep the version they started on.
CREATE TABLE workflows (
    account_id      text        NOT NULL,
    workflow_id     text        NOT NULL,
    current_version int         NOT NULL,
    record_type     text        NOT NULL,
    name            text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, workflow_id)
);

CREATE TABLE workflow_versions (
    account_id      text        NOT NULL,
    workflow_id     text        NOT NULL,
    version         int         NOT NULL,
    definition      jsonb       NOT NULL,
    definition_hash text        NOT NULL,
    applied_by      jsonb       NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, workflow_id, version)
);

CREATE TABLE enrollments (
    enrollment_id     uuid        PRIMARY KEY,
    account_id        text        NOT NULL,
    workflow_id       text        NOT NULL,
    workflow_version  int         NOT NULL,
    record_type       text        NOT NULL,
    record_id         text        NOT NULL,
    contact           jsonb,
    status            text        NOT NULL,  -- active | paused | completed | exited
    current_step      int         NOT NULL,  -- index of the step that runs next
    steps_completed   int         NOT NULL DEFAULT 0,
    next_due_at       timestamptz,
    paused_until      timestamptz,
    exit_reason       text,
    exit_source       text,
    exit_actor        jsonb,
    triggering_event  jsonb,
    enrolled_by       jsonb       NOT NULL,
    enrolled_at       timestamptz NOT NULL,
    ended_at          timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (account_id, workflow_id, workflow_version)
        REFERENCES workflow_versions (account_id, workflow_id, version)
);
-- A record is in a workflow at most once at a time (paused counts as in).
CREATE UNIQUE INDEX enrollments_one_live_per_record
    ON enrollments (account_id, workflow_id, record_type, record_id)
    WHERE status IN ('active', 'paused');
CREATE INDEX enrollments_by_record ON enrollments (account_id, record_type, record_id);

-- History is never deleted: every transition of every enrollment, and every rejection.
CREATE TABLE enrollment_history (
    id            bigserial   PRIMARY KEY,
    account_id    text        NOT NULL,
    enrollment_id uuid,
    workflow_id   text        NOT NULL,
    record_type   text        NOT NULL,
    record_id     text        NOT NULL,
    event_type    text        NOT NULL,
    detail        jsonb       NOT NULL,
    caused_by     uuid,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrollment_history_by_enrollment ON enrollment_history (enrollment_id, id);
CREATE INDEX enrollment_history_by_record ON enrollment_history (account_id, record_type, record_id, id);
