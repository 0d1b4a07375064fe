-- Audit trail (tamper-evident, append-only), usage metering and billing.

-- The head of each org's audit hash chain; locked (FOR UPDATE) by whoever appends, which gives one
-- sequencer per chain.
CREATE TABLE audit_chain_heads (
    org_id      uuid PRIMARY KEY REFERENCES orgs (id),
    seq         bigint NOT NULL,
    entry_hash  bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CALL gatehouse_enable_tenant_rls('audit_chain_heads');

-- entry_hash = SHA-256(prev_hash || seq as 8 big-endian bytes || canonical JSON of the entry).
CREATE TABLE audit_events (
    org_id      uuid NOT NULL REFERENCES orgs (id),
    seq         bigint NOT NULL CHECK (seq >= 1),
    id          uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL CHECK (source IN ('control', 'data')),
    actor_type  text NOT NULL CHECK (actor_type IN ('user', 'service_token', 'oauth_client', 'system', 'anonymous')),
    actor_id    text,
    actor_label text,
    action      text NOT NULL,
    target_type text,
    target_id   text,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'denied', 'error', 'rate_limited')),
    ip          inet,
    user_agent  text,
    details     jsonb NOT NULL DEFAULT '{}',
    prev_hash   bytea NOT NULL,
    entry_hash  bytea NOT NULL,
    PRIMARY KEY (org_id, seq),
    UNIQUE (org_id, id)
);
CREATE INDEX audit_events_time ON audit_events (org_id, occurred_at);
CREATE INDEX audit_events_action ON audit_events (org_id, action, occurred_at);
CALL gatehouse_enable_tenant_rls('audit_events');
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM gatehouse_app;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION gatehouse_refuse_mutation();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_refuse_mutation();

-- One row per metered event from the dataplane; the primary key deduplicates redeliveries.
CREATE TABLE usage_events (
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    source      text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    endpoint_id uuid,
    server_id   uuid,
    tool        text,
    subject     text,
    client_id   text,
    outcome     text NOT NULL,
    latency_ms  integer NOT NULL DEFAULT 0,
    bytes_in    bigint NOT NULL DEFAULT 0,
    bytes_out   bigint NOT NULL DEFAULT 0,
    units       bigint NOT NULL DEFAULT 1 CHECK (units >= 0),
    args_hash   text,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX usage_events_time ON usage_events (org_id, occurred_at);
CALL gatehouse_enable_tenant_rls('usage_events');

-- Minute buckets, upserted in the same transaction as the raw events actually inserted, so that
-- the rollups always equal the sum of the distinct raw events.
CREATE TABLE usage_rollups (
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    bucket_start    timestamptz NOT NULL,
    endpoint_id     uuid NOT NULL,
    tool            text NOT NULL DEFAULT '',
    calls           bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    denied          bigint NOT NULL DEFAULT 0,
    rate_limited    bigint NOT NULL DEFAULT 0,
    units           bigint NOT NULL DEFAULT 0,
    bytes_in        bigint NOT NULL DEFAULT 0,
    bytes_out       bigint NOT NULL DEFAULT 0,
    latency_ms_sum  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, bucket_start, endpoint_id, tool)
);
CALL gatehouse_enable_tenant_rls('usage_rollups');

CREATE TABLE invoices (
    id              uuid NOT NULL,
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    period_start    date NOT NULL,
    period_end      date NOT NULL,
    plan_id         text NOT NULL REFERENCES plans (id),
    status          text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'final')),
    currency        text NOT NULL DEFAULT 'usd',
    total_cents     bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finalized_at    timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, period_start),
    CHECK (period_start < period_end)
);
CALL gatehouse_enable_tenant_rls('invoices');

CREATE TABLE invoice_lines (
    org_id                  uuid NOT NULL,
    invoice_id              uuid NOT NULL,
    line_no                 integer NOT NULL,
    description             text NOT NULL,
    quantity                bigint NOT NULL,
    unit_price_millicents   bigint NOT NULL,
    amount_cents            bigint NOT NULL,
    PRIMARY KEY (org_id, invoice_id, line_no),
    FOREIGN KEY (org_id, invoice_id) REFERENCES invoices (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('invoice_lines');

-- Usage alert emails already sent, so each threshold is mailed once per period.
CREATE TABLE usage_alerts_sent (
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    period_start    date NOT NULL,
    threshold_pct   integer NOT NULL CHECK (threshold_pct BETWEEN 1 AND 1000),
    sent_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, period_start, threshold_pct)
);
CALL gatehouse_enable_tenant_rls('usage_alerts_sent');
