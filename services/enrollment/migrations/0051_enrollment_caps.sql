-- The daily enrollment cap: an enroll over it waits in parked_enrolls until release_at
-- (the start of the workflow's next day), decided then in arrival order (parked_at, seq:
-- one deferred again keeps its first parked_at). Rows without release_at wait for their
-- workflow to be applied, as before.
ALTER TABLE parked_enrolls ADD COLUMN release_at timestamptz;
CREATE INDEX parked_enrolls_by_release ON parked_enrolls (release_at, parked_at, seq)
    WHERE release_at IS NOT NULL;
CREATE INDEX parked_enrolls_waiting_for_cap ON parked_enrolls (account_id, workflow_id)
    WHERE release_at IS NOT NULL;
-- Counting a workflow's enrollments of the day.
CREATE INDEX enrollments_by_workflow_enrolled_at
    ON enrollments (account_id, workflow_id, enrolled_at);
