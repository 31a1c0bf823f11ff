-- Workflow lifecycle (issue 9): a workflow is running, paused (enrolls no one until it is
-- resumed) or deleted (never again; its rows stay); its place in the account's list; and
-- whether it is active (has a live enrollment), kept so that a change is published once
-- (activity_seq numbers the changes: the event's id derives from it).
ALTER TABLE workflows
    ADD COLUMN status       text    NOT NULL DEFAULT 'running',
    ADD COLUMN position     int,
    ADD COLUMN active       boolean NOT NULL DEFAULT false,
    ADD COLUMN activity_seq int     NOT NULL DEFAULT 0;

UPDATE workflows w SET active = EXISTS (
    SELECT 1 FROM enrollments e
    WHERE e.account_id = w.account_id AND e.workflow_id = w.workflow_id
      AND e.status IN ('active', 'paused'));

-- The exits a paused or deleted workflow owes, made in chunks by the sweep loop; the
-- command that started them is kept whole: every exit and progress event is caused by it.
CREATE TABLE workflow_sweeps (
    account_id  text        NOT NULL,
    sweep_id    uuid        NOT NULL,
    workflow_id text        NOT NULL,
    reason      text        NOT NULL,
    actor       jsonb       NOT NULL,
    cutoff      timestamptz NOT NULL,
    command     jsonb       NOT NULL,
    exited      int         NOT NULL DEFAULT 0,
    waiting     int         NOT NULL DEFAULT 0,
    chunks      int         NOT NULL DEFAULT 0,
    started_seq bigserial   NOT NULL,
    done_at     timestamptz,
    PRIMARY KEY (account_id, sweep_id)
);
CREATE INDEX workflow_sweeps_unfinished ON workflow_sweeps (started_seq) WHERE done_at IS NULL;

-- A restore is a new enrollment that continues an exited one.
ALTER TABLE enrollments
    ADD COLUMN restored_from uuid,
    ADD COLUMN restored_as   uuid;

-- Bulk restore looks for a workflow's exits by time.
CREATE INDEX enrollments_exits_by_workflow ON enrollments (account_id, workflow_id, ended_at)
    WHERE status = 'exited';
