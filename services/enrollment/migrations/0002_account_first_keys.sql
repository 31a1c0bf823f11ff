-- Accounts never touch each other: every row is found by its account and its id, never by
-- an id alone, so the account leads every key a row is looked up by.
ALTER TABLE enrollments DROP CONSTRAINT enrollments_pkey;
ALTER TABLE enrollments ADD PRIMARY KEY (account_id, enrollment_id);

ALTER TABLE enrollment_history DROP CONSTRAINT enrollment_history_pkey;
ALTER TABLE enrollment_history ADD PRIMARY KEY (account_id, id);
DROP INDEX enrollment_history_by_enrollment;
CREATE INDEX enrollment_history_by_enrollment
    ON enrollment_history (account_id, enrollment_id, id);
