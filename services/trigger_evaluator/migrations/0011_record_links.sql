-- Issue 10. trigger-evaluator's own projection of CRM associations between contacts,
-- organizations and deals (from record.upserted, association.changed, record.deleted):
-- each association as two rows, one per direction. Read to find a company's contacts
-- (a reply or a deal that opened at the company), preferred over the email domain.
CREATE TABLE record_links (
    account_id   text NOT NULL,
    record_type  text NOT NULL,
    record_id    text NOT NULL,
    linked_type  text NOT NULL,
    linked_id    text NOT NULL,
    PRIMARY KEY (account_id, record_type, record_id, linked_type, linked_id)
);
-- A snapshot or deletion of a record drops the rows that name it on either side.
CREATE INDEX record_links_by_linked ON record_links (account_id, linked_type, linked_id);
