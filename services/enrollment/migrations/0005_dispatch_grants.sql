-- Dispatch grants: the step messaging may send (granted on the enrollment row, which an
-- exit locks too), until when a provider call may start, and an exit waiting for the
-- outcome of that send. Both NULL for every enrollment that existed before.
ALTER TABLE enrollments
    ADD COLUMN dispatch_id uuid,
    ADD COLUMN dispatch_step int,
    ADD COLUMN dispatch_step_id text,
    ADD COLUMN dispatch_lease_until timestamptz,
    ADD COLUMN pending_exit jsonb;

-- The lapse loop's scan: only exiting enrollments (a handful at any time).
CREATE INDEX enrollments_pending_exits ON enrollments (account_id, dispatch_lease_until)
    WHERE pending_exit IS NOT NULL;
