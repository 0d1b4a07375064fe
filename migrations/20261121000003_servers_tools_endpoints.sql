-- What an org publishes: domain servers and backends, their tools, scopes and endpoints.

-- An upstream MCP server. Its own credential is sealed (AES-256-GCM with the key id inside the blob);
-- the caller's token is never sent upstream.
CREATE TABLE domain_servers (
    id                      uuid NOT NULL,
    org_id                  uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    -- Namespace of its tools at endpoints: `<slug>__<tool>`.
    slug                    text NOT NULL CHECK (slug ~ '^[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?$'),
    name                    text NOT NULL,
    url                     text NOT NULL,
    transport               text NOT NULL DEFAULT 'streamable_http'
                                CHECK (transport IN ('streamable_http', 'http_sse')),
    auth_kind               text NOT NULL DEFAULT 'none'
                                CHECK (auth_kind IN ('none', 'bearer', 'header', 'oauth_client_credentials')),
    auth_header_name        text,
    credential_enc          bytea,
    oauth_token_url         text,
    oauth_client_id         text,
    oauth_scope             text,
    -- Send a short-lived assertion signed by Gatehouse naming org, endpoint and caller.
    send_caller_assertion   boolean NOT NULL DEFAULT false,
    last_synced_at          timestamptz,
    last_sync_error         text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, slug),
    CHECK ((auth_kind = 'none') = (credential_enc IS NULL)),
    CHECK (auth_kind <> 'header' OR auth_header_name IS NOT NULL),
    CHECK (auth_kind <> 'oauth_client_credentials' OR (oauth_token_url IS NOT NULL AND oauth_client_id IS NOT NULL))
);
CALL gatehouse_enable_tenant_rls('domain_servers');

-- A tenant PostgreSQL database that hosted SQL tools query. The DSN is sealed.
CREATE TABLE backends (
    id                      uuid NOT NULL,
    org_id                  uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    slug                    text NOT NULL CHECK (slug ~ '^[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?$'),
    name                    text NOT NULL,
    kind                    text NOT NULL DEFAULT 'postgres' CHECK (kind IN ('postgres')),
    dsn_enc                 bytea NOT NULL,
    allowed_schemas         text[] NOT NULL DEFAULT '{public}',
    statement_timeout_ms    integer NOT NULL DEFAULT 5000 CHECK (statement_timeout_ms BETWEEN 1 AND 60000),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, slug)
);
CALL gatehouse_enable_tenant_rls('backends');

-- A tool offered by a domain server (or a hosted SQL tool on a backend). `definition` is the latest
-- definition seen upstream; `approved_definition`/`approved_hash` are what an admin approved and
-- the only thing ever served. A drifted definition (hash differs) puts the tool in `changed`, which
-- withholds it until re-approved (rug-pull defence).
CREATE TABLE tools (
    id                  uuid NOT NULL,
    org_id              uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('upstream', 'sql')),
    server_id           uuid,
    backend_id          uuid,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    definition          jsonb NOT NULL,
    definition_hash     bytea NOT NULL,
    approved_definition jsonb,
    approved_hash       bytea,
    status              text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'approved', 'changed', 'rejected', 'removed')),
    -- Findings of the tool-poisoning heuristics on the latest definition, for the approver.
    flags               jsonb NOT NULL DEFAULT '[]',
    sql_text            text,
    decided_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    decided_at          timestamptz,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, server_id) REFERENCES domain_servers (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, backend_id) REFERENCES backends (org_id, id) ON DELETE CASCADE,
    CHECK ((kind = 'upstream') = (server_id IS NOT NULL)),
    CHECK ((kind = 'sql') = (backend_id IS NOT NULL AND sql_text IS NOT NULL)),
    CHECK (status <> 'approved' OR (approved_hash IS NOT NULL AND approved_hash = definition_hash))
);
CREATE UNIQUE INDEX tools_server_name ON tools (org_id, server_id, name) WHERE server_id IS NOT NULL;
CREATE UNIQUE INDEX tools_backend_name ON tools (org_id, backend_id, name) WHERE backend_id IS NOT NULL;
CALL gatehouse_enable_tenant_rls('tools');

-- Authorization vocabulary: a scope grants a set of tools. `min_role` caps who may hold it.
CREATE TABLE scopes (
    id          uuid NOT NULL,
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9:._-]{0,63}$'),
    description text NOT NULL DEFAULT '',
    min_role    text NOT NULL DEFAULT 'viewer' CHECK (min_role IN ('owner', 'admin', 'developer', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, name)
);
CALL gatehouse_enable_tenant_rls('scopes');

CREATE TABLE scope_grants (
    org_id      uuid NOT NULL,
    scope_id    uuid NOT NULL,
    tool_id     uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, scope_id, tool_id),
    FOREIGN KEY (org_id, scope_id) REFERENCES scopes (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, tool_id) REFERENCES tools (org_id, id) ON DELETE CASCADE
);
CREATE INDEX scope_grants_tool ON scope_grants (org_id, tool_id);
CALL gatehouse_enable_tenant_rls('scope_grants');

-- A governed MCP endpoint: `{dataplane public URL}/{org slug}/{endpoint slug}/mcp`.
CREATE TABLE endpoints (
    id          uuid NOT NULL,
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$'),
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- Rate limits enforced by the dataplane: per org, per subject and per tool.
    rate_limits jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, slug)
);
CALL gatehouse_enable_tenant_rls('endpoints');

-- The domain servers an endpoint combines; with all_tools = false only the tools listed in
-- endpoint_tools are exposed.
CREATE TABLE endpoint_servers (
    org_id      uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    server_id   uuid NOT NULL,
    all_tools   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, endpoint_id, server_id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, server_id) REFERENCES domain_servers (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('endpoint_servers');

CREATE TABLE endpoint_tools (
    org_id      uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    tool_id     uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, endpoint_id, tool_id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, tool_id) REFERENCES tools (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('endpoint_tools');
