-- The protocol revision each domain server spoke at its last successful sync: '2026-07-28' for a
-- stateless server, otherwise the session revision it negotiated ('2025-11-25', ..., '2024-11-05'
-- over HTTP+SSE). NULL until a sync succeeds.
ALTER TABLE domain_servers
    ADD COLUMN protocol_revision text
        CHECK (protocol_revision ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$');
