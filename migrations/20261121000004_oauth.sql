-- The integrated OAuth 2.1 authorization server.

-- Public clients registered dynamically (RFC 7591) or known by a Client ID Metadata Document
-- (the client id is the document's https URL). Global: any org's users may use them; what they may
-- do is decided per endpoint by consent and scopes.
CREATE TABLE oauth_clients (
    client_id                   text PRIMARY KEY,
    registration_type           text NOT NULL CHECK (registration_type IN ('dynamic', 'metadata_document')),
    client_name                 text,
    client_uri                  text,
    logo_uri                    text,
    redirect_uris               text[] NOT NULL,
    grant_types                 text[] NOT NULL DEFAULT '{authorization_code,refresh_token}',
    response_types              text[] NOT NULL DEFAULT '{code}',
    token_endpoint_auth_method  text NOT NULL DEFAULT 'none'
                                    CHECK (token_endpoint_auth_method IN ('none', 'client_secret_basic', 'client_secret_post')),
    application_type            text NOT NULL DEFAULT 'web' CHECK (application_type IN ('web', 'native')),
    client_secret_hash          bytea,
    metadata                    jsonb NOT NULL DEFAULT '{}',
    -- Metadata documents are cached per their HTTP caching headers.
    document_fetched_at         timestamptz,
    document_expires_at         timestamptz,
    document_etag               text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

-- Token signing keys. A key is published in the JWKS before it signs (publish_at <= sign_from) and
-- stays published until the tokens it signed have expired (expire_at). The private key is sealed.
CREATE TABLE signing_keys (
    kid             text PRIMARY KEY,
    alg             text NOT NULL CHECK (alg IN ('EdDSA', 'ES256')),
    public_jwk      jsonb NOT NULL,
    private_key_enc bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    publish_at      timestamptz NOT NULL,
    sign_from       timestamptz NOT NULL,
    retire_at       timestamptz,
    expire_at       timestamptz,
    CHECK (publish_at <= sign_from),
    CHECK (retire_at IS NULL OR expire_at IS NULL OR retire_at <= expire_at)
);

-- Confidential clients pre-registered by an org admin for the client_credentials grant. Their
-- client_id carries the org id so the token endpoint resolves the tenant before any lookup.
CREATE TABLE service_clients (
    id              uuid NOT NULL,
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    client_id       text NOT NULL,
    name            text NOT NULL,
    secret_hash     bytea NOT NULL,
    endpoint_id     uuid NOT NULL,
    scopes          text[] NOT NULL DEFAULT '{}',
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, client_id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('service_clients');

-- Authorization codes: single use, short-lived, bound to client, redirect URI, PKCE challenge,
-- user, endpoint (resource) and scopes. Only a hash of the code is stored; the code itself carries
-- the org id. `family_id` records what a redemption issued, so a replay can revoke it.
CREATE TABLE oauth_authorization_codes (
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    code_hash       bytea NOT NULL,
    client_id       text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL,
    redirect_uri    text NOT NULL,
    code_challenge  text NOT NULL,
    scopes          text[] NOT NULL,
    resource        text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    consumed_at     timestamptz,
    family_id       uuid,
    PRIMARY KEY (org_id, code_hash),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('oauth_authorization_codes');

-- A refresh-token family: every rotation of one grant. Reuse of a rotated token revokes the family.
CREATE TABLE oauth_refresh_families (
    id              uuid NOT NULL,
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    client_id       text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL,
    scopes          text[] NOT NULL,
    resource        text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    revoked_reason  text,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_refresh_families_user ON oauth_refresh_families (org_id, user_id);
CREATE INDEX oauth_refresh_families_client ON oauth_refresh_families (org_id, client_id);
CALL gatehouse_enable_tenant_rls('oauth_refresh_families');

CREATE TABLE oauth_refresh_tokens (
    org_id      uuid NOT NULL,
    token_hash  bytea NOT NULL,
    family_id   uuid NOT NULL,
    generation  integer NOT NULL CHECK (generation >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Set when this token was exchanged for its successor; a second use is a replay.
    rotated_at  timestamptz,
    PRIMARY KEY (org_id, token_hash),
    UNIQUE (org_id, family_id, generation),
    FOREIGN KEY (org_id, family_id) REFERENCES oauth_refresh_families (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('oauth_refresh_tokens');

-- Remembered consent, per user per client per endpoint. Revocable.
CREATE TABLE oauth_consents (
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL,
    scopes      text[] NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (org_id, user_id, client_id, endpoint_id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('oauth_consents');

-- Long-lived scoped tokens for one endpoint (CI agents). Shown once; only a hash is stored. The
-- token carries the org id and a recognisable prefix.
CREATE TABLE service_tokens (
    id              uuid NOT NULL,
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL,
    name            text NOT NULL,
    token_prefix    text NOT NULL,
    token_hash      bytea NOT NULL,
    scopes          text[] NOT NULL DEFAULT '{}',
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, token_hash),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('service_tokens');

-- Revocations the dataplane must honour until the affected access tokens have expired anyway:
-- a refresh family (tokens carry its id), a single access token (jti), or every grant of a user or
-- client at an endpoint.
CREATE TABLE token_revocations (
    id          uuid NOT NULL,
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('family', 'jti', 'user', 'client')),
    value       text NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX token_revocations_live ON token_revocations (org_id, expires_at);
CALL gatehouse_enable_tenant_rls('token_revocations');
