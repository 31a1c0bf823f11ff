-- Enrolls read before their workflow was applied (the two are keyed apart, so either may
-- be read first): each waits here, whole, until the workflow's first version is applied
-- (then it is enrolled in that transaction) or until OFFRAMP_PARK_MAX_S passed (then it
-- is rejected with unknown_workflow, as it would have been at once).
CREATE TABLE parked_enrolls (
    account_id  text        NOT NULL,
    message_id  uuid        NOT NULL,
    workflow_id text        NOT NULL,
    seq         bigserial   NOT NULL,  -- arrival order: parked enrolls apply in it
    command     jsonb       NOT NULL,  -- the enrollment.enroll as read
    parked_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, message_id)
);
CREATE INDEX parked_enrolls_by_workflow ON parked_enrolls (account_id, workflow_id, seq);
CREATE INDEX parked_enrolls_by_age ON parked_enrolls (parked_at, seq);
