-- When each enrollment began (the occurred_at of its first enrollment.enrolled): an event
-- that occurred before it does not exit it. Null for enrollments projected before this
-- column existed, and for one whose enrollment.enrolled has not been read yet.
ALTER TABLE enrollments ADD COLUMN enrolled_at timestamptz;

-- Inbound events that matched no enrollment, or an enrollment of a workflow version not
-- projected yet, kept until what they wait for is projected (match_keys, see parking.py)
-- or they expire. The event itself is kept as read, to be evaluated again.
CREATE TABLE parked_events (
    account_id         text        NOT NULL,
    inbound_message_id uuid        NOT NULL,
    inbound_type       text        NOT NULL,
    topic              text        NOT NULL,
    event              text        NOT NULL,
    match_keys         text[]      NOT NULL,
    why                text        NOT NULL,
    parked_at          timestamptz NOT NULL,
    check_at           timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (account_id, inbound_message_id)
);
-- Each run of projection events probes it with the keys it brings (array overlap: GIN).
-- Probes far outnumber parkings, so keys go straight into the index (no pending list).
CREATE INDEX parked_events_by_key ON parked_events USING gin (match_keys)
    WITH (fastupdate = off);
CREATE INDEX parked_events_by_check ON parked_events (check_at);
