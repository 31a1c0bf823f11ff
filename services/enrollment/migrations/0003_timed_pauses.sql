-- A timed pause: paused_until (already there, now stored) and the pause's id, which the
-- scheduler's resume names so that the timer of an ended pause never resumes a later one.
ALTER TABLE enrollments ADD COLUMN pause_id uuid;
