-- Roles and helpers shared by every tenant table.
--
-- `gatehouse_app` is the NOLOGIN group role that holds the services' privileges. The login role the
-- services use (the user in `database.url`) is made a member of it by `gatehouse migrate`; that role
-- owns nothing, is not a superuser and cannot bypass row-level security. Tables are owned by the
-- role that runs the migrations. Roles are cluster-wide, so creation tolerates a concurrent creator
-- (several test databases are migrated in one cluster at once).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gatehouse_app') THEN
        CREATE ROLE gatehouse_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO gatehouse_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Every table and sequence the migration owner creates from here on is usable by the app role.
-- Append-only tables revoke UPDATE/DELETE explicitly after creation.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gatehouse_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO gatehouse_app;

-- Enables and forces row-level security on a tenant table and installs its tenant policy. The
-- policy compares `org_id` with the transaction's tenant, written inline (not through a function)
-- so that the planner turns it into an index condition. `set_config(..., true)` leaves the setting
-- as '' (not NULL) once the transaction ends, hence NULLIF: no tenant set means no row matches.
CREATE PROCEDURE gatehouse_enable_tenant_rls(tbl regclass)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public
AS $proc$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format(
        $f$CREATE POLICY tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC
           USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
           WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)$f$,
        tbl);
END
$proc$;
REVOKE ALL ON PROCEDURE gatehouse_enable_tenant_rls(regclass) FROM PUBLIC;

-- Append-only guard for audit tables: UPDATE, DELETE and TRUNCATE are refused even for a role that
-- was granted them by mistake.
CREATE FUNCTION gatehouse_refuse_mutation() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
