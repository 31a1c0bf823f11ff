-- Issue 10. Each workflow version's trigger settings as applied (out-of-office pauses,
-- URL and field rules, link and conversation options: WorkflowSettings as JSON, read by
-- domain through pydantic). Null for versions projected before this column: defaults.
ALTER TABLE workflow_versions ADD COLUMN settings jsonb;

-- An automatic reply pauses an enrollment: a decision of its own, with its planned resume.
ALTER TABLE decisions DROP CONSTRAINT decisions_decision_check;
ALTER TABLE decisions ADD CONSTRAINT decisions_decision_check
    CHECK (decision IN ('exit', 'pause', 'ignored'));
ALTER TABLE decisions ADD COLUMN resume_at timestamptz;
