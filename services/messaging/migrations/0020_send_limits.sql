-- Send limits: a rolling 24-hour cap on provider calls per sending mailbox or number
-- (a send's sender, per account), shared by every workflow and every replica.
--   send_quotas: one row per limited sender, locked (FOR UPDATE) by every claim that hands
--                that sender's sends to a provider, so replicas take its capacity one at a
--                time. blocked_until: the sender is full until then; the claim skips its
--                sends until that instant.
--   send_usage:  one row per provider call handed over under a limit, at the claim's
--                instant (the sender's clock); a claim that starts no call (released,
--                deferred, cancelled) deletes its row. Rows older than 24 hours are
--                deleted by the next claim of that sender.
CREATE TABLE send_quotas (
    account_id    text NOT NULL,
    sender        text NOT NULL,
    blocked_until timestamptz,
    PRIMARY KEY (account_id, sender)
);

CREATE TABLE send_usage (
    account_id text NOT NULL,
    sender     text NOT NULL,
    attempt_id uuid NOT NULL,
    used_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, sender, attempt_id)
);
CREATE INDEX send_usage_in_window ON send_usage (account_id, sender, used_at);

-- The queue per sender (what waits, oldest first), for a claim's due-order check and for
-- `offramp sends queue` and /metrics.
CREATE INDEX sends_pending_by_sender ON sends (account_id, sender, next_attempt_at)
    WHERE status = 'pending';
