-- The record's IANA time zone, from the enroll command's contact details (NULL: unknown,
-- the workflow's send window then uses its own default zone). Enrollments made before
-- this column existed take it from the contact details they were enrolled with.
ALTER TABLE enrollments ADD COLUMN time_zone text;
UPDATE enrollments SET time_zone = contact->>'time_zone'
    WHERE contact IS NOT NULL AND contact->>'time_zone' IS NOT NULL;
