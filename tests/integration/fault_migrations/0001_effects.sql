CREATE TABLE effects (
    account_id text NOT NULL,
    message_id uuid NOT NULL,
    record_id  text NOT NULL,
    PRIMARY KEY (account_id, message_id)
);
