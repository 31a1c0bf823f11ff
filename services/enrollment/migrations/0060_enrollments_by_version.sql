-- workflow.migrate: the live enrollments of one version of a workflow, found by the key.
CREATE INDEX enrollments_live_by_version
    ON enrollments (account_id, workflow_id, workflow_version, enrollment_id)
    WHERE status IN ('active', 'paused');
