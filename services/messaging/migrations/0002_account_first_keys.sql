-- Accounts never touch each other: a projected enrollment or a send is found by its
-- account and its ids, never by an id alone. sends_pending_due stays global: the sender
-- scans every account's due sends by design.
ALTER TABLE enrollments DROP CONSTRAINT enrollments_pkey;
ALTER TABLE enrollments ADD PRIMARY KEY (account_id, enrollment_id);

ALTER TABLE sends DROP CONSTRAINT sends_pkey;
ALTER TABLE sends ADD PRIMARY KEY (account_id, enrollment_id, step_index);
