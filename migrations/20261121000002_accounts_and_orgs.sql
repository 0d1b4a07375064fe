-- Accounts (global) and organisations (the tenants) with their members.

-- Billing plans are platform data: readable by the services, written only by migrations/operators.
CREATE TABLE plans (
    id                              text PRIMARY KEY,
    name                            text NOT NULL,
    monthly_fee_cents               bigint NOT NULL DEFAULT 0 CHECK (monthly_fee_cents >= 0),
    included_calls                  bigint NOT NULL CHECK (included_calls >= 0),
    overage_cents_per_1000_calls    bigint NOT NULL DEFAULT 0 CHECK (overage_cents_per_1000_calls >= 0),
    -- Calls per billing period beyond which calls are refused; NULL means no hard cap.
    hard_limit_calls                bigint CHECK (hard_limit_calls IS NULL OR hard_limit_calls >= 0),
    created_at                      timestamptz NOT NULL DEFAULT now()
);
REVOKE INSERT, UPDATE, DELETE ON plans FROM gatehouse_app;
INSERT INTO plans (id, name, monthly_fee_cents, included_calls, overage_cents_per_1000_calls, hard_limit_calls) VALUES
    ('free',       'Free',           0,     10000,     0, 10000),
    ('team',       'Team',        4900,   1000000,    50, NULL),
    ('enterprise', 'Enterprise', 99900, 100000000,    20, NULL);

-- People. Global: a user may belong to several orgs. `password_hash` is NULL for users who only
-- ever logged in through their org's SSO.
CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    email_verified_at   timestamptz,
    password_hash       text,
    display_name        text NOT NULL DEFAULT '',
    password_changed_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- Console login sessions. Only a hash of the session token is stored.
CREATE TABLE user_sessions (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    auth_method     text NOT NULL CHECK (auth_method IN ('password', 'sso')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    ip              inet,
    user_agent      text
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);

-- Single-use links sent by email (verification, password reset). Only hashes are stored.
CREATE TABLE email_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);

-- The tenant registry. Global by nature: the slug is unique across the platform and appears in
-- every public endpoint URL. It holds no tenant secrets; everything an org owns lives in tenant
-- tables below, keyed by org_id under row-level security.
CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan_id     text NOT NULL DEFAULT 'free' REFERENCES plans (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per-org settings, including the configuration version the dataplane compares against.
CREATE TABLE org_settings (
    org_id              uuid PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    -- Record tool-call arguments in the audit trail (off: only a hash is kept).
    log_tool_arguments  boolean NOT NULL DEFAULT false,
    -- Bumped by every change that affects the dataplane; published to dataplanes.
    config_version      bigint NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CALL gatehouse_enable_tenant_rls('org_settings');

CREATE TABLE memberships (
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);
CALL gatehouse_enable_tenant_rls('memberships');
-- A user may see their own memberships across orgs (to list "my orgs") in a user-scoped
-- transaction. Read-only; writes still require the org's tenant context.
CREATE POLICY member_reads_own ON memberships AS PERMISSIVE FOR SELECT TO PUBLIC
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);

CREATE TABLE invitations (
    id          uuid NOT NULL,
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email       text NOT NULL CHECK (email = lower(email)),
    role        text NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
    token_hash  bytea NOT NULL,
    invited_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at  timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, token_hash)
);
CALL gatehouse_enable_tenant_rls('invitations');

-- An org's OpenID Connect provider for SSO. The client secret is sealed (AES-256-GCM, key id inside).
CREATE TABLE org_sso_providers (
    org_id              uuid PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    issuer_url          text NOT NULL,
    client_id           text NOT NULL,
    client_secret_enc   bytea NOT NULL,
    -- Verified emails of these domains join the org just in time on first SSO login.
    allowed_domains     text[] NOT NULL DEFAULT '{}',
    jit_role            text NOT NULL DEFAULT 'developer' CHECK (jit_role IN ('admin', 'developer', 'viewer')),
    enabled             boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CALL gatehouse_enable_tenant_rls('org_sso_providers');

-- Links an identity at the org's provider (issuer + subject) to a Gatehouse user.
CREATE TABLE sso_identities (
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    issuer          text NOT NULL,
    subject         text NOT NULL,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_login_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, issuer, subject)
);
CREATE INDEX sso_identities_user ON sso_identities (user_id);
CALL gatehouse_enable_tenant_rls('sso_identities');
