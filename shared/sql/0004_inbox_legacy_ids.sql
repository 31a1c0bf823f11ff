-- Ids processed before the inbox was keyed by account (0003 gave them account ''): they
-- keep de-duplicating redeliveries and rewinds, whatever account a record then names,
-- until they are older than the inbox retention and pruned like any other id.
CREATE TABLE inbox_legacy (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
INSERT INTO inbox_legacy (consumer, message_id, processed_at)
    SELECT consumer, message_id, processed_at FROM inbox WHERE account_id = '';
DELETE FROM inbox WHERE account_id = '';
