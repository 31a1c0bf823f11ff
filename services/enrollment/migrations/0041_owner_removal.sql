-- What happens to the workflows of an owner who was deleted or downgraded, per account
-- (no row: exit, the default). Its own table: other account settings are not this one's.
CREATE TABLE account_owner_removal (
    account_id          text        PRIMARY KEY,
    policy              text        NOT NULL,  -- exit | reassign
    reassign_to_user_id text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
