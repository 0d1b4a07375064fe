-- Operator administration: plans carry everything an operator sets and can be retired, orgs can
-- be suspended, operators appear as actors in org audit trails, and the platform has its own
-- audit trail of operator actions.

-- What a plan sets besides prices and calls. `rate_limit_defaults` is the rate limits (the
-- endpoint `rate_limits` shape, without per-tool limits) that endpoints created in an org on the
-- plan start with; `retention_days` how long the org's audit trail and usage are kept (NULL:
-- forever); `seats` how many members the org may have (NULL: unlimited). A retired plan keeps
-- its orgs but no org can be moved onto it.
ALTER TABLE plans
    ADD COLUMN rate_limit_defaults  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rate_limit_defaults) = 'object'),
    ADD COLUMN retention_days       integer CHECK (retention_days IS NULL OR retention_days >= 1),
    ADD COLUMN seats                integer CHECK (seats IS NULL OR seats >= 1),
    ADD COLUMN retired_at           timestamptz,
    ADD COLUMN updated_at           timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT plans_id_format CHECK (id ~ '^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$') NOT VALID,
    ADD CONSTRAINT plans_name_length CHECK (length(name) BETWEEN 1 AND 200) NOT VALID;

-- The plan of installs that bill nobody: no fee, no hard cap. `gatehouse up` seeds its demo org on it.
INSERT INTO plans (id, name, monthly_fee_cents, included_calls, overage_cents_per_1000_calls, hard_limit_calls)
VALUES ('self_hosted', 'Self-hosted', 0, 0, 0, NULL)
ON CONFLICT (id) DO NOTHING;

-- Plans are written through the operator API (operator credential, see docs/operations.md), which
-- runs as the services' role. Plans are never deleted: orgs and invoices refer to them.
GRANT INSERT, UPDATE ON plans TO gatehouse_app;

-- A suspended org's endpoints refuse calls; its members can still sign in and export its audit
-- trail. Set and cleared only by operators.
ALTER TABLE orgs
    ADD COLUMN suspended_at     timestamptz,
    ADD COLUMN suspended_reason text CHECK (suspended_reason IS NULL OR length(suspended_reason) <= 500);

-- Operators act in orgs' trails under their own actor type.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_actor_type_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_type_check
    CHECK (actor_type IN ('user', 'service_token', 'oauth_client', 'system', 'anonymous', 'operator'));

-- The platform trail: every operator action, append-only and hash-chained like an org's trail
-- (the chain of the pseudo-org "platform"). Global: no tenant reads it; only the operator API.
CREATE TABLE platform_audit_chain_head (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq         bigint NOT NULL,
    entry_hash  bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform_audit_events (
    seq         bigint PRIMARY KEY CHECK (seq >= 1),
    id          uuid NOT NULL UNIQUE,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    actor_type  text NOT NULL CHECK (actor_type IN ('operator', 'system')),
    actor_id    text,
    actor_label text,
    action      text NOT NULL,
    target_type text,
    target_id   text,
    -- The org the action affected, if any (its own trail has the same event). No foreign key:
    -- the trail outlives what it mentions. Not named org_id: this is a platform table, not a
    -- tenant one (tenant tables are those with org_id, each under forced row-level security).
    affected_org_id uuid,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'denied', 'error', 'rate_limited')),
    ip          inet,
    user_agent  text,
    details     jsonb NOT NULL DEFAULT '{}',
    prev_hash   bytea NOT NULL,
    entry_hash  bytea NOT NULL
);
CREATE INDEX platform_audit_events_org ON platform_audit_events (affected_org_id, seq);
REVOKE UPDATE, DELETE, TRUNCATE ON platform_audit_events FROM gatehouse_app;
CREATE TRIGGER platform_audit_events_append_only BEFORE UPDATE OR DELETE ON platform_audit_events
    FOR EACH ROW EXECUTE FUNCTION gatehouse_refuse_mutation();
CREATE TRIGGER platform_audit_events_no_truncate BEFORE TRUNCATE ON platform_audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_refuse_mutation();
