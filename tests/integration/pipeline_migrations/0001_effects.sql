CREATE TABLE effects (
    message_id uuid PRIMARY KEY,
    record_id  text NOT NULL
);
