-- A plan's `retention_days` bounds how long the audit trail and raw usage of every org on it are
-- kept. The services cannot delete either (the audit trail is append-only; its guard refuses
-- UPDATE and DELETE), so pruning goes through one function the migration owner defines: it prunes
-- only the transaction's own org (`app.org_id`, as every tenant query), only what the org's plan
-- lets go, and keeps the audit chain verifiable.
--
-- Audit: the oldest entries go first, as a prefix of the chain (entries recorded before the
-- cutoff, up to the first entry recorded after it). The chain head remembers where the kept chain
-- starts (`pruned_through_seq`) and the hash the first kept entry links to, so verification
-- starts there instead of at genesis. An `audit.pruned` entry in the org's own trail says what went.
--
-- Usage: raw events and minute rollups older than the cutoff go, but only those an invoice already
-- counted (invoices are computed from raw events; the current period's quota and the next invoice
-- keep theirs). Period totals and invoices are kept.
ALTER TABLE audit_chain_heads
    ADD COLUMN pruned_through_seq  bigint NOT NULL DEFAULT 0 CHECK (pruned_through_seq >= 0),
    ADD COLUMN pruned_through_hash bytea;

-- The append-only guard of audit_events lets the pruning function (and only it, running as the
-- table owner with the marker set for its own transaction) delete.
CREATE FUNCTION gatehouse_audit_events_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('gatehouse.pruning', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION gatehouse_audit_events_guard();

-- Prunes at most `max_entries` audit entries (and the usage rows older than the cutoff) of the
-- transaction's org, per its plan's retention. Returns the sequence number the kept chain now
-- starts after (0: nothing pruned, ever). A no-op for plans that keep everything.
CREATE FUNCTION gatehouse_apply_retention(max_entries integer)
    RETURNS TABLE (audit_pruned bigint, pruned_through_seq bigint, usage_pruned bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
DECLARE
    org        uuid := NULLIF(current_setting('app.org_id', true), '')::uuid;
    keep_days  integer;
    cutoff     timestamptz;
    head_seq   bigint;
    from_seq   bigint;
    upto_seq   bigint;
    upto_hash  bytea;
    n_audit    bigint := 0;
    n_usage    bigint := 0;
    n_rollup   bigint := 0;
    invoiced   timestamptz;
    billed_at  timestamptz;
BEGIN
    IF org IS NULL THEN
        RAISE EXCEPTION 'gatehouse_apply_retention needs the transaction''s org (app.org_id)';
    END IF;
    IF max_entries IS NULL OR max_entries < 1 THEN
        RAISE EXCEPTION 'max_entries must be at least 1';
    END IF;
    SELECT p.retention_days INTO keep_days FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = org;
    SELECT h.pruned_through_seq INTO from_seq FROM audit_chain_heads h WHERE h.org_id = org;
    IF keep_days IS NULL THEN
        RETURN QUERY SELECT 0::bigint, COALESCE(from_seq, 0), 0::bigint;
        RETURN;
    END IF;
    cutoff := now() - make_interval(days => keep_days);

    -- The chain head is locked by every appender: pruning and appending are serialized per org.
    SELECT h.seq, h.pruned_through_seq INTO head_seq, from_seq
      FROM audit_chain_heads h WHERE h.org_id = org FOR UPDATE;
    IF head_seq IS NOT NULL THEN
        SELECT COALESCE(min(e.seq) - 1, head_seq) INTO upto_seq
          FROM audit_events e WHERE e.org_id = org AND e.recorded_at >= cutoff;
        upto_seq := LEAST(upto_seq, from_seq + max_entries);
        IF upto_seq > from_seq THEN
            SELECT e.entry_hash INTO upto_hash FROM audit_events e WHERE e.org_id = org AND e.seq = upto_seq;
            PERFORM set_config('gatehouse.pruning', 'on', true);
            DELETE FROM audit_events e WHERE e.org_id = org AND e.seq > from_seq AND e.seq <= upto_seq;
            GET DIAGNOSTICS n_audit = ROW_COUNT;
            PERFORM set_config('gatehouse.pruning', 'off', true);
            UPDATE audit_chain_heads h
               SET pruned_through_seq = upto_seq, pruned_through_hash = upto_hash
             WHERE h.org_id = org;
            from_seq := upto_seq;
        END IF;
    END IF;

    -- Raw events already counted by an invoice: of an invoiced period, and recorded before the
    -- last invoice was made (a late event is billed by the next invoice, so it stays until then).
    SELECT max(i.period_end)::timestamptz, max(i.created_at) INTO invoiced, billed_at
      FROM invoices i WHERE i.org_id = org;
    IF invoiced IS NOT NULL THEN
        DELETE FROM usage_events u
         WHERE u.org_id = org AND u.occurred_at < LEAST(cutoff, invoiced) AND u.recorded_at < billed_at;
        GET DIAGNOSTICS n_usage = ROW_COUNT;
        DELETE FROM usage_rollups r WHERE r.org_id = org AND r.bucket_start < LEAST(cutoff, invoiced);
        GET DIAGNOSTICS n_rollup = ROW_COUNT;
    END IF;
    RETURN QUERY SELECT n_audit, COALESCE(from_seq, 0), n_usage + n_rollup;
END
$$;
REVOKE ALL ON FUNCTION gatehouse_apply_retention(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gatehouse_apply_retention(integer) TO gatehouse_app;
