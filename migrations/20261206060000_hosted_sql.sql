-- Hosted SQL tools: what a backend needs beyond its connection string, a SQL tool's own fields,
-- tables an admin marked as tenant-neutral reference data, and the endpoints that expose a
-- backend's tools.

ALTER TABLE backends
    -- TLS to the backend; `verify_full` checks the chain (against tls_ca_pem when set) and host.
    ADD COLUMN tls_mode text NOT NULL DEFAULT 'verify_full'
        CHECK (tls_mode IN ('disable', 'require', 'verify_ca', 'verify_full')),
    ADD COLUMN tls_ca_pem text CHECK (length(tls_ca_pem) <= 65536),
    -- The key that signs caller contexts for this backend (32 bytes), sealed like the DSN and
    -- bound to (org, backend). NULL only for rows made before this column: such a backend serves
    -- no tool.
    ADD COLUMN context_key_enc bytea,
    -- The NOLOGIN role the setup script creates to own the backend's `gatehouse` schema.
    ADD COLUMN owner_role text NOT NULL DEFAULT 'gatehouse_context_owner'
        CHECK (owner_role ~ '^[a-z_][a-z0-9_]{0,62}$'),
    -- Functions tools may call beyond the built-in allowlist (`name` or `schema.name`).
    ADD COLUMN allowed_functions text[] NOT NULL DEFAULT '{}',
    -- Most rows a call returns (reads) or changes (writes).
    ADD COLUMN max_rows integer NOT NULL DEFAULT 1000 CHECK (max_rows BETWEEN 1 AND 10000),
    -- The outcome of the last connection test (server version, role, schema version, key).
    ADD COLUMN last_test jsonb,
    ADD COLUMN last_tested_at timestamptz;

ALTER TABLE tools
    -- SQL tools: `read` (runs READ ONLY) or `write`, and whether a call needs confirmation.
    ADD COLUMN sql_access text CHECK (sql_access IN ('read', 'write')),
    ADD COLUMN sql_destructive boolean NOT NULL DEFAULT false,
    -- What the runtime runs (statement with positional parameters, parameter and column types
    -- learned from the backend), as validated now and as approved. The definition hash covers it.
    ADD COLUMN sql_target jsonb,
    ADD COLUMN approved_sql_target jsonb,
    -- The latest inspection: the relations the statement touches and their row-level security.
    ADD COLUMN sql_inspection jsonb,
    ADD CONSTRAINT tools_sql_fields CHECK ((kind = 'sql') = (sql_access IS NOT NULL AND sql_target IS NOT NULL)),
    ADD CONSTRAINT tools_sql_approved CHECK (kind <> 'sql' OR status <> 'approved' OR approved_sql_target IS NOT NULL);

-- Relations of a backend an admin declared tenant-neutral reference data (e.g. a product
-- catalogue): a tool may read them without row-level security. Marking and unmarking is audited.
CREATE TABLE backend_reference_tables (
    org_id      uuid NOT NULL,
    backend_id  uuid NOT NULL,
    schema_name text NOT NULL CHECK (length(schema_name) BETWEEN 1 AND 63),
    table_name  text NOT NULL CHECK (length(table_name) BETWEEN 1 AND 63),
    marked_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, backend_id, schema_name, table_name),
    FOREIGN KEY (org_id, backend_id) REFERENCES backends (org_id, id) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('backend_reference_tables');

-- The backends an endpoint combines (besides its domain servers); with all_tools = false only
-- the tools listed in endpoint_tools are exposed.
CREATE TABLE endpoint_backends (
    org_id      uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    backend_id  uuid NOT NULL,
    all_tools   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, endpoint_id, backend_id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES endpoints (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, backend_id) REFERENCES backends (org_id, id) ON DELETE CASCADE
);
CREATE INDEX endpoint_backends_backend ON endpoint_backends (org_id, backend_id);
CALL gatehouse_enable_tenant_rls('endpoint_backends');
