-- Accounts never touch each other: a projected enrollment is found by its account and its
-- id, never by an id alone, so two accounts' enrollments with one id are two rows (before,
-- the second account's events for an id were dropped). Decisions lead with the account too.
ALTER TABLE enrollments DROP CONSTRAINT enrollments_pkey;
ALTER TABLE enrollments ADD PRIMARY KEY (account_id, enrollment_id);

ALTER TABLE decisions DROP CONSTRAINT decisions_pkey;
ALTER TABLE decisions ADD PRIMARY KEY (account_id, id);
DROP INDEX decisions_by_enrollment;
CREATE INDEX decisions_by_enrollment ON decisions (account_id, enrollment_id)
    WHERE enrollment_id IS NOT NULL;
