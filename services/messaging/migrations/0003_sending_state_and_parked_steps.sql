-- A send is claimed in one short transaction and its outcome recorded in another; the
-- provider is called between them, outside any transaction.
--   parked:  a step.due whose workflow version messaging has not projected yet; it has no
--            content until workflow.applied arrives (then it becomes pending), or it fails
--            once it has waited longer than OFFRAMP_PARK_MAX_S.
--   sending: claimed by attempt_id until claimed_until. An outcome is recorded only while
--            the row still holds that attempt; a row found here past its lease was left by
--            a crash and is resolved by the next claim.
ALTER TABLE sends DROP CONSTRAINT sends_status_check;
ALTER TABLE sends ADD CONSTRAINT sends_status_check
    CHECK (status IN ('parked', 'pending', 'sending', 'sent', 'cancelled', 'failed'));

ALTER TABLE sends ALTER COLUMN sender DROP NOT NULL,
                  ALTER COLUMN subject DROP NOT NULL,
                  ALTER COLUMN body DROP NOT NULL;
-- Only a parked step, or one that failed while parked, has no content.
ALTER TABLE sends ADD CONSTRAINT sends_rendered_unless_parked
    CHECK (status IN ('parked', 'failed')
           OR (sender IS NOT NULL AND subject IS NOT NULL AND body IS NOT NULL));

ALTER TABLE sends ADD COLUMN attempt_id      uuid,
                  ADD COLUMN claimed_until   timestamptz,
                  -- When the current run of transient failures began: the retry budget
                  -- (OFFRAMP_SEND_RETRY_BUDGET_S) counts from here.
                  ADD COLUMN first_failed_at timestamptz,
                  -- hard_bounce, rejected or retries_exhausted (FailureKind) once failed.
                  ADD COLUMN failure_kind    text;
ALTER TABLE sends ADD CONSTRAINT sends_sending_holds_a_lease
    CHECK (status <> 'sending' OR (attempt_id IS NOT NULL AND claimed_until IS NOT NULL));

-- The claim looks for leases run out (crashes) beside due pending rows; the re-drive and the
-- expiry pass look for parked rows by version and by age.
CREATE INDEX sends_sending_lease ON sends (claimed_until) WHERE status = 'sending';
CREATE INDEX sends_parked_by_version ON sends (account_id, workflow_id, workflow_version)
    WHERE status = 'parked';
CREATE INDEX sends_parked_since ON sends (created_at) WHERE status = 'parked';
