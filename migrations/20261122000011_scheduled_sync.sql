-- Scheduled re-sync of domain servers: when each server is next due. A control-API replica claims
-- due servers by moving this forward in one UPDATE, so replicas never sync the same server twice.
ALTER TABLE domain_servers ADD COLUMN next_sync_at timestamptz;
CREATE INDEX domain_servers_next_sync ON domain_servers (org_id, next_sync_at);
