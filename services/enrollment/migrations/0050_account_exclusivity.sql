-- In how many workflows a record may be live at once, per account (no row: no_limit, the
-- default). Its own table: other account settings are not this one's.
CREATE TABLE account_exclusivity (
    account_id  text        PRIMARY KEY,
    exclusivity text        NOT NULL,  -- no_limit | one_workflow | one_exclusive_workflow
    updated_at  timestamptz NOT NULL DEFAULT now()
);
