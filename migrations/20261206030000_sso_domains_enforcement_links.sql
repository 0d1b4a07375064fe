-- Which accounts an org's identity provider may create or sign in to, and whether an org requires
-- single sign-on.

-- Email domains an org proves it controls through a DNS TXT challenge. The challenge value is
-- random per org and domain (one org's record never verifies the domain for another) and public
-- (it is published in DNS). `verified_at` is set by a check that found the record and cleared by
-- one that found it gone.
CREATE TABLE org_sso_domains (
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    domain          text NOT NULL CHECK (domain = lower(domain) AND length(domain) BETWEEN 3 AND 253),
    challenge       text NOT NULL CHECK (length(challenge) BETWEEN 16 AND 128),
    created_at      timestamptz NOT NULL DEFAULT now(),
    verified_at     timestamptz,
    last_checked_at timestamptz,
    PRIMARY KEY (org_id, domain)
);
CALL gatehouse_enable_tenant_rls('org_sso_domains');

-- An SSO identity of an unverified domain waits here until the address's owner follows the
-- link mailed to it; only then is the account created (or the existing one linked). Only the
-- hash of the link's token is stored.
CREATE TABLE sso_pending_links (
    id              uuid NOT NULL,
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL,
    issuer          text NOT NULL,
    subject         text NOT NULL,
    email           text NOT NULL CHECK (email = lower(email)),
    display_name    text NOT NULL DEFAULT '',
    return_to       text NOT NULL DEFAULT '/',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, token_hash)
);
CREATE INDEX sso_pending_links_expiry ON sso_pending_links (org_id, expires_at);
CALL gatehouse_enable_tenant_rls('sso_pending_links');

-- Set while the org requires SSO: since when.
ALTER TABLE org_sso_providers ADD COLUMN enforced_at timestamptz;

-- Client secrets are sealed with their org in the associated data. Rows sealed before (with a
-- constant context) keep `false` until their first use re-seals them.
ALTER TABLE org_sso_providers ADD COLUMN client_secret_org_bound boolean NOT NULL DEFAULT false;

-- The org whose SSO signed a console session in (NULL: a password session).
ALTER TABLE user_sessions ADD COLUMN sso_org_id uuid REFERENCES orgs (id) ON DELETE SET NULL;
