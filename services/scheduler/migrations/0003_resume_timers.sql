-- Timed pauses: one resume timer per pause (pause_id is the id of its enrollment.paused).
-- When due, the scheduler publishes enrollment.resume naming the pause, through the
-- outbox in the same transaction. A resume, exit or completion first deletes the pending
-- timer; a fired one stays, so a replayed pause is not armed again.
CREATE TABLE resume_timers (
    account_id     text        NOT NULL,
    enrollment_id  uuid        NOT NULL,
    pause_id       uuid        NOT NULL,
    workflow_id    text        NOT NULL,
    record_type    text        NOT NULL,
    record_id      text        NOT NULL,
    due_at         timestamptz NOT NULL,
    correlation_id uuid,
    state          text        NOT NULL DEFAULT 'pending',  -- pending | fired
    fired_at       timestamptz,
    PRIMARY KEY (account_id, enrollment_id, pause_id)
);
CREATE INDEX resume_timers_pending_due ON resume_timers (due_at) WHERE state = 'pending';
