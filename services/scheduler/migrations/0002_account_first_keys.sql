-- Accounts never touch each other: a timer or an ended enrollment is found by its account
-- and its id, never by an id alone. timers_pending_due stays global: the due-timer loop
-- scans every account's due work by design.
ALTER TABLE timers DROP CONSTRAINT timers_pkey;
ALTER TABLE timers ADD PRIMARY KEY (account_id, enrollment_id, step_index);

-- Ended enrollments gain their account. Timers are never deleted and every enrollment's
-- first step arms one, so they know the account of almost every ended enrollment; the rest
-- (ended before any step was scheduled) cannot be attributed and are dropped: a late step
-- for one of them arms a timer whose send messaging's re-check then cancels.
ALTER TABLE ended_enrollments ADD COLUMN account_id text;
UPDATE ended_enrollments e SET account_id = t.account_id
FROM (SELECT DISTINCT enrollment_id, account_id FROM timers) AS t
WHERE t.enrollment_id = e.enrollment_id;
DELETE FROM ended_enrollments WHERE account_id IS NULL;
ALTER TABLE ended_enrollments ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE ended_enrollments DROP CONSTRAINT ended_enrollments_pkey;
ALTER TABLE ended_enrollments ADD PRIMARY KEY (account_id, enrollment_id);
