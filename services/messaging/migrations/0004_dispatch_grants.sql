-- Sends are authorized by enrollment's dispatch grants (enrollment.step_granted): no
-- provider call starts for a send unless its grant's lease is still valid and the grant
-- was not revoked (enrollment.dispatch_revoked cancels what has not started).
--   dispatch_id:       the grant the send is queued under (a renewal may replace it).
--   lease_until:       no provider call starts at or after this instant (messaging's
--                      clock). NULL: a row queued before grants existed, sendable as before.
--   renewal_asked_for: the lapsed lease message.deferred asked a renewal of. While it
--                      equals lease_until (and that has lapsed), the claim skips the row; a
--                      renewal (a later lease) makes it claimable again.
ALTER TABLE sends ADD COLUMN dispatch_id       uuid,
                  ADD COLUMN lease_until       timestamptz,
                  ADD COLUMN renewal_asked_for timestamptz;

-- A parked step may now be cancelled (its grant revoked, its enrollment ended) before its
-- workflow version ever gave it content.
ALTER TABLE sends DROP CONSTRAINT sends_rendered_unless_parked;
ALTER TABLE sends ADD CONSTRAINT sends_rendered_unless_parked
    CHECK (status IN ('parked', 'failed', 'cancelled')
           OR (sender IS NOT NULL AND subject IS NOT NULL AND body IS NOT NULL));
