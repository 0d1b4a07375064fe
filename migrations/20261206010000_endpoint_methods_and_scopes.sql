-- What an endpoint forwards beyond the MCP methods Gatehouse understands, and which scope names
-- it publishes to callers that have no token yet.
ALTER TABLE endpoints
    -- Vendor methods forwarded to the upstreams: exact method names, or prefixes written
    -- `prefix/*`. Never a method of MCP's own namespaces (checked by the API). Empty: none; every
    -- method Gatehouse does not understand is answered -32601.
    ADD COLUMN extra_methods text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(extra_methods) <= 32),
    -- true: 401 challenges and the protected-resource metadata name every scope that grants
    -- something at the endpoint; false: only the scopes any member may hold (minimum role viewer).
    ADD COLUMN publish_scopes boolean NOT NULL DEFAULT false;
