-- The inbox is keyed by account as well as message id: upstream connectors often derive
-- ids from their own per-tenant ids, so two accounts may send the same message_id and
-- neither may swallow the other's. A replayed dead letter (`offramp deadletters replay`)
-- records which dead letter it came from.
ALTER TABLE inbox ADD COLUMN account_id text NOT NULL DEFAULT '';
ALTER TABLE inbox ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (consumer, account_id, message_id);
ALTER TABLE inbox ADD COLUMN replayed_from text;

-- Outbox rows that can never be published (too large, unknown topic, refused by the
-- broker) are moved here with the reason, so they never block the rows behind them.
ALTER TABLE outbox ADD COLUMN attempts int NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error text;

CREATE TABLE outbox_quarantine (
    id             bigint      PRIMARY KEY,
    topic          text        NOT NULL,
    key            text        NOT NULL,
    value          bytea       NOT NULL,
    headers        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL,
    attempts       int         NOT NULL,
    reason         text        NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);
