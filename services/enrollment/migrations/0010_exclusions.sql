-- Exclusions (issue 8). The record projection: what the CRM said of each record, the
-- lookups rules need (addresses, normalised domains, associations both ways), addresses
-- that hard-bounced or unsubscribed; exclusion rules (versioned), rulesets, uploaded
-- lists; and the audience an enrollment came from.
CREATE TABLE crm_records (
    account_id   text        NOT NULL,
    record_type  text        NOT NULL,
    record_id    text        NOT NULL,
    fields       jsonb       NOT NULL DEFAULT '{}',
    email        text,
    aliases      text[]      NOT NULL DEFAULT '{}',
    company_name text,
    domains      text[]      NOT NULL DEFAULT '{}',  -- normalised
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, record_type, record_id)
);
CREATE INDEX crm_records_by_company_name
    ON crm_records (account_id, lower(regexp_replace(btrim(company_name), '\s+', ' ', 'g')))
    WHERE company_name IS NOT NULL;

-- Every address (primary and aliases) and every company domain of a record.
CREATE TABLE crm_record_emails (
    account_id  text NOT NULL,
    email       text NOT NULL,
    record_type text NOT NULL,
    record_id   text NOT NULL,
    PRIMARY KEY (account_id, email, record_type, record_id)
);
CREATE INDEX crm_record_emails_by_record ON crm_record_emails (account_id, record_type, record_id);
CREATE TABLE crm_record_domains (
    account_id  text NOT NULL,
    domain      text NOT NULL,
    record_type text NOT NULL,
    record_id   text NOT NULL,
    PRIMARY KEY (account_id, domain, record_type, record_id)
);
CREATE INDEX crm_record_domains_by_record ON crm_record_domains (account_id, record_type, record_id);

-- Associations have no direction: each is stored both ways.
CREATE TABLE crm_associations (
    account_id text NOT NULL,
    a_type     text NOT NULL,
    a_id       text NOT NULL,
    b_type     text NOT NULL,
    b_id       text NOT NULL,
    PRIMARY KEY (account_id, a_type, a_id, b_type, b_id)
);

CREATE TABLE email_suppressions (
    account_id text        NOT NULL,
    email      text        NOT NULL,
    kind       text        NOT NULL,  -- hard_bounced | unsubscribed
    at         timestamptz NOT NULL,
    PRIMARY KEY (account_id, email, kind)
);

CREATE TABLE exclusion_rules (
    account_id      text NOT NULL,
    rule_id         text NOT NULL,
    current_version int  NOT NULL,
    PRIMARY KEY (account_id, rule_id)
);
CREATE TABLE exclusion_rule_versions (
    account_id text        NOT NULL,
    rule_id    text        NOT NULL,
    version    int         NOT NULL,
    definition jsonb       NOT NULL,
    enabled    boolean     NOT NULL,
    deleted    boolean     NOT NULL,
    change     text        NOT NULL,
    actor      jsonb       NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (account_id, rule_id, version)
);

CREATE TABLE exclusion_rulesets (
    account_id text        NOT NULL,
    owner      text        NOT NULL,  -- workflow | audience
    owner_id   text        NOT NULL,
    toggles    jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, owner, owner_id)
);

CREATE TABLE exclusion_lists (
    account_id text        NOT NULL,
    list_id    text        NOT NULL,
    kind       text        NOT NULL,  -- email | domain | company_name
    upload_id  uuid        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, list_id)
);
CREATE TABLE exclusion_list_entries (
    account_id text NOT NULL,
    list_id    text NOT NULL,
    value      text NOT NULL,  -- normalised as the list's kind says
    line       int  NOT NULL,
    PRIMARY KEY (account_id, list_id, value)
);

CREATE TABLE enrollment_audiences (
    account_id    text NOT NULL,
    enrollment_id uuid NOT NULL,
    audience_id   text NOT NULL,
    PRIMARY KEY (account_id, enrollment_id)
);

-- A rule change sweeps an account's live enrollments in id order.
CREATE INDEX enrollments_live_by_account ON enrollments (account_id, enrollment_id)
    WHERE status IN ('active', 'paused');
