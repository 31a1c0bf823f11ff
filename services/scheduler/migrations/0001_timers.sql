-- Durable step timers. One row per (enrollment, step); the scheduler fires due rows and
-- publishes step.due through the outbox in the same transaction.
CREATE TABLE timers (
    enrollment_id    uuid        NOT NULL,
    step_index       int         NOT NULL,
    account_id       text        NOT NULL,
    workflow_id      text        NOT NULL,
    workflow_version int         NOT NULL,
    record_type      text        NOT NULL,
    record_id        text        NOT NULL,
    step_id          text        NOT NULL,
    channel          text        NOT NULL,
    due_at           timestamptz NOT NULL,
    state            text        NOT NULL DEFAULT 'pending',  -- pending | fired | cancelled
    fired_at         timestamptz,
    cancelled_reason text,
    PRIMARY KEY (enrollment_id, step_index)
);
-- Only pending rows are ever scanned for due work; a partial index keeps that scan small
-- however many timers have fired.
CREATE INDEX timers_pending_due ON timers (due_at) WHERE state = 'pending';

-- Enrollments that ended: a late step_scheduled for them must not create a timer.
CREATE TABLE ended_enrollments (
    enrollment_id uuid        PRIMARY KEY,
    outcome       text        NOT NULL,
    ended_at      timestamptz NOT NULL DEFAULT now()
);
