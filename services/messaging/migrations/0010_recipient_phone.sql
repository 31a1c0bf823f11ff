-- SMS steps go to the contact's phone number (E.164), carried by enrollment.enrolled like
-- the email address. Null for enrollments projected before phones existed, or without one.
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS recipient_phone text;
