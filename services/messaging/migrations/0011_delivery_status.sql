-- Delivery-status callbacks (message.delivery_status): the latest report a provider made
-- about a sent SMS or chat message, found by the id Offramp gave the message.
--   delivery_status:      queued, sent, delivered, read, undelivered or failed.
--   delivery_error:       the provider's code and words, when it gave any.
--   delivery_reported_at: when the provider made that report (an older one changes nothing).
ALTER TABLE sends
    ADD COLUMN IF NOT EXISTS delivery_status      text,
    ADD COLUMN IF NOT EXISTS delivery_error       text,
    ADD COLUMN IF NOT EXISTS delivery_reported_at timestamptz;

CREATE INDEX IF NOT EXISTS sends_by_provider_message_id
    ON sends (account_id, provider_message_id);
