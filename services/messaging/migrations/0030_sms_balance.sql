-- The per-account SMS balance, in segments (``sms_balance``). An account is metered once it
-- has a row here (its first sms_balance.credit or .configure).
--   sms_balances:     the balance (always the sum of the account's sms_ledger deltas; never
--                     negative) and what a step the balance cannot cover does.
--   sms_reservations: one row per SMS step of a metered account: its segments and where its
--                     reservation stands (reserved, short, debited, refunded); generation
--                     counts reservations of that step (a step re-scheduled after its
--                     refund is reserved anew).
--   sms_ledger:       every movement; the unique keys make a duplicate event move nothing.
CREATE TABLE sms_balances (
    account_id text NOT NULL PRIMARY KEY,
    balance    bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    when_short text NOT NULL DEFAULT 'wait' CHECK (when_short IN ('wait', 'fail'))
);

CREATE TABLE sms_reservations (
    account_id    text NOT NULL,
    enrollment_id uuid NOT NULL,
    step_index    int NOT NULL,
    segments      int NOT NULL CHECK (segments >= 1),
    state         text NOT NULL CHECK (state IN ('reserved', 'short', 'debited', 'refunded')),
    generation    int NOT NULL CHECK (generation >= 1),
    since         timestamptz NOT NULL,
    PRIMARY KEY (account_id, enrollment_id, step_index)
);
CREATE INDEX sms_reservations_short ON sms_reservations (account_id, since)
    WHERE state = 'short';

CREATE TABLE sms_ledger (
    account_id    text NOT NULL,
    movement_id   bigint GENERATED ALWAYS AS IDENTITY,
    kind          text NOT NULL CHECK (kind IN ('credit', 'reserve', 'debit', 'refund')),
    segments      int NOT NULL,
    delta         bigint NOT NULL,
    balance_after bigint NOT NULL,
    enrollment_id uuid,
    step_index    int,
    generation    int,
    credit_id     text,
    reason        text,
    at            timestamptz NOT NULL,
    PRIMARY KEY (account_id, movement_id),
    CHECK ((kind = 'credit') = (credit_id IS NOT NULL)),
    CHECK ((kind = 'credit') = (enrollment_id IS NULL))
);
CREATE UNIQUE INDEX sms_ledger_credit ON sms_ledger (account_id, credit_id)
    WHERE kind = 'credit';
CREATE UNIQUE INDEX sms_ledger_step ON sms_ledger
    (account_id, enrollment_id, step_index, generation, kind) WHERE kind <> 'credit';
-- Each generation ends once: debited or refunded, never both.
CREATE UNIQUE INDEX sms_ledger_step_end ON sms_ledger
    (account_id, enrollment_id, step_index, generation) WHERE kind IN ('debit', 'refund');
