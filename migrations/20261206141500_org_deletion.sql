-- Deleting an org (its owner, `DELETE /api/v1/orgs/{org}`) removes the org and everything it
-- owns. Every tenant table cascades from `orgs` except the audit trail, whose rows the services
-- cannot delete (append-only: privilege revoked, guard trigger). The org's trail goes with the
-- org: it describes an org that no longer exists, and a member who wants it exports it first.
-- What remains is the platform trail's `org.deleted` entry (no foreign key; it outlives what it
-- mentions), which records who deleted which org and the final head of the org's chain (its last
-- sequence number and hash), so an export made before the deletion can still be checked against it.
--
-- Deletion goes through one function the migration owner defines, as retention's pruning does: it
-- deletes only the transaction's own org (`app.org_id`), lets the audit guard through for that
-- org's rows only, and locks the chain head first, so an appender waiting on it fails afterwards
-- on the missing org (the usage-worker drops events of deleted orgs).

-- The platform trail records deletions by org owners too.
ALTER TABLE platform_audit_events DROP CONSTRAINT platform_audit_events_actor_type_check;
ALTER TABLE platform_audit_events ADD CONSTRAINT platform_audit_events_actor_type_check
    CHECK (actor_type IN ('operator', 'system', 'user'));

-- The append-only guard lets through retention's pruning and the deletion of one whole org (the
-- org named by the marker the deletion function sets for its own transaction).
CREATE OR REPLACE FUNCTION gatehouse_audit_events_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('gatehouse.pruning', true) = 'on' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'DELETE' AND current_setting('gatehouse.deleting_org', true) = OLD.org_id::text THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Deletes the transaction's org with its audit trail; returns how many audit entries went and the
-- chain head they ended at (0 and NULL for an empty chain). Raises `no_data_found` when the org
-- does not exist.
CREATE FUNCTION gatehouse_delete_org()
    RETURNS TABLE (audit_entries bigint, head_seq bigint, head_hash bytea)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
DECLARE
    org      uuid := NULLIF(current_setting('app.org_id', true), '')::uuid;
    n_audit  bigint := 0;
    seq_at   bigint := 0;
    hash_at  bytea;
BEGIN
    IF org IS NULL THEN
        RAISE EXCEPTION 'gatehouse_delete_org needs the transaction''s org (app.org_id)';
    END IF;
    PERFORM 1 FROM orgs o WHERE o.id = org FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such org' USING ERRCODE = 'no_data_found';
    END IF;
    SELECT h.seq, h.entry_hash INTO seq_at, hash_at FROM audit_chain_heads h WHERE h.org_id = org FOR UPDATE;
    PERFORM set_config('gatehouse.deleting_org', org::text, true);
    DELETE FROM audit_events e WHERE e.org_id = org;
    GET DIAGNOSTICS n_audit = ROW_COUNT;
    PERFORM set_config('gatehouse.deleting_org', '', true);
    DELETE FROM audit_chain_heads h WHERE h.org_id = org;
    DELETE FROM orgs o WHERE o.id = org;
    RETURN QUERY SELECT n_audit, COALESCE(seq_at, 0), hash_at;
END
$$;
REVOKE ALL ON FUNCTION gatehouse_delete_org() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gatehouse_delete_org() TO gatehouse_app;
