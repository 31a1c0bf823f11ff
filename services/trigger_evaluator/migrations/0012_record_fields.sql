-- Issue 10. The last snapshot of each CRM record's fields (from record.upserted; a
-- record.deleted forgets it): a new snapshot is compared with it to know which fields
-- were set, updated or cleared (the "field set or updated" trigger).
CREATE TABLE record_fields (
    account_id  text  NOT NULL,
    record_type text  NOT NULL,
    record_id   text  NOT NULL,
    fields      jsonb NOT NULL,
    PRIMARY KEY (account_id, record_type, record_id)
);
