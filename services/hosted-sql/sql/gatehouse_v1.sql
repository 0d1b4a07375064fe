-- Gatehouse hosted SQL tools: the caller context on a backend database, schema version 1.
--
-- Run once per backend database as a superuser (`psql -v ON_ERROR_STOP=1 -f`). It creates:
--   * the NOLOGIN role @OWNER@, which owns everything below and alone can read the context keys
--     (no SUPERUSER, no BYPASSRLS, no LOGIN: nobody can connect as it);
--   * the schema `gatehouse` with the key table, the accessor functions policies call
--     (gatehouse.org(), gatehouse.subject(), gatehouse.claim(text), gatehouse.has_scope(text), ...),
--     and the tables behind idempotent retries and destructive-tool confirmations.
-- Gatehouse signs each call's caller context with the backend's key (HMAC-SHA256) and binds it to
-- the transaction (backend pid and transaction start); the accessors verify it. SQL running in the
-- same transaction can set `gatehouse.context` to anything, but cannot sign a value, and a value
-- seen in one transaction is refused in any other.
BEGIN;

DO $guard$
DECLARE
    installed boolean := false;
BEGIN
    IF to_regclass('gatehouse.schema_version') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM gatehouse.schema_version WHERE version >= 1)' INTO installed;
    END IF;
    IF installed THEN
        RAISE EXCEPTION 'gatehouse schema version 1 is already installed';
    END IF;
END
$guard$;

DO $role$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = @OWNER_LITERAL@) THEN
        CREATE ROLE @OWNER@ NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT NOCREATEDB NOCREATEROLE;
    END IF;
END
$role$;

CREATE SCHEMA gatehouse AUTHORIZATION @OWNER@;
REVOKE ALL ON SCHEMA gatehouse FROM PUBLIC;
GRANT USAGE ON SCHEMA gatehouse TO PUBLIC;

-- Everything from here on is created by, and owned by, the owner role.
SET LOCAL ROLE @OWNER@;

CREATE TABLE gatehouse.schema_version (
    version      integer PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON gatehouse.schema_version TO PUBLIC;

-- HMAC-SHA256 keys, stored as the two padded key blocks (key XOR ipad, key XOR opad) so that a
-- verification is two sha256() calls. Readable by the owner role only.
CREATE TABLE gatehouse.context_keys (
    kid        text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_.-]{1,64}$'),
    k_ipad     bytea NOT NULL CHECK (length(k_ipad) = 64),
    k_opad     bytea NOT NULL CHECK (length(k_opad) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON gatehouse.context_keys FROM PUBLIC;

-- Results of write calls made with an idempotency key, per (org, endpoint, subject, tool, key).
CREATE TABLE gatehouse.idempotency (
    scope          bytea PRIMARY KEY,
    arguments_hash bytea NOT NULL,
    result         jsonb,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_created ON gatehouse.idempotency (created_at);
REVOKE ALL ON gatehouse.idempotency FROM PUBLIC;

-- Confirmation tokens of destructive calls already used (each works once).
CREATE TABLE gatehouse.confirmations (
    nonce      bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX confirmations_expiry ON gatehouse.confirmations (expires_at);
REVOKE ALL ON gatehouse.confirmations FROM PUBLIC;

-- Installs (or replaces) a context key. Only the owner role and superusers may call it.
CREATE FUNCTION gatehouse.install_key(p_kid text, p_key bytea) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     bytea;
    ipad  bytea := '\x'::bytea;
    opad  bytea := '\x'::bytea;
    b     integer;
BEGIN
    IF length(p_key) <> 32 THEN
        RAISE EXCEPTION 'a gatehouse context key is 32 bytes';
    END IF;
    k := p_key || decode(repeat('00', 32), 'hex');
    FOR i IN 0..63 LOOP
        b := get_byte(k, i);
        ipad := ipad || decode(lpad(to_hex(b # 54), 2, '0'), 'hex');
        opad := opad || decode(lpad(to_hex(b # 92), 2, '0'), 'hex');
    END LOOP;
    INSERT INTO gatehouse.context_keys (kid, k_ipad, k_opad) VALUES (p_kid, ipad, opad)
        ON CONFLICT (kid) DO UPDATE SET k_ipad = EXCLUDED.k_ipad, k_opad = EXCLUDED.k_opad, created_at = now();
END
$$;
REVOKE ALL ON FUNCTION gatehouse.install_key(text, bytea) FROM PUBLIC;

-- What binds a context to the current transaction: backend pid and transaction start (µs).
-- Gatehouse reads it at the start of each call and signs it into the context.
CREATE FUNCTION gatehouse.binding() RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_backend_pid()::text || ':' || (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint::text
$$;

-- The verified caller context of this transaction, or NULL when none is set (then every policy
-- that reads it matches nothing). A context that is malformed, signed with another key, or bound
-- to another transaction is an error.
CREATE FUNCTION gatehouse._verified() RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_raw    text := current_setting('gatehouse.context', true);
    v_kid    text;
    v_sig    text;
    v_body   text;
    v_ipad   bytea;
    v_opad   bytea;
    v_mac    bytea;
    v_claims jsonb;
BEGIN
    IF v_raw IS NULL OR v_raw = '' THEN
        RETURN NULL;
    END IF;
    -- v1:<kid>:<hex HMAC>:<JSON claims>
    IF split_part(v_raw, ':', 1) <> 'v1' THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: malformed caller context', ERRCODE = '28000';
    END IF;
    v_kid := split_part(v_raw, ':', 2);
    v_sig := split_part(v_raw, ':', 3);
    v_body := substr(v_raw, length(v_kid) + length(v_sig) + 6);
    IF v_sig !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: malformed caller context', ERRCODE = '28000';
    END IF;
    SELECT k.k_ipad, k.k_opad INTO v_ipad, v_opad FROM gatehouse.context_keys k WHERE k.kid = v_kid;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: caller context signed with an unknown key', ERRCODE = '28000';
    END IF;
    v_mac := sha256(v_opad || sha256(v_ipad || convert_to('v1:' || v_kid || ':' || v_body, 'UTF8')));
    -- Compared through a second hash, so timing says nothing about how much of a forgery matched.
    IF sha256(v_mac) <> sha256(decode(v_sig, 'hex')) THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: caller context signature invalid', ERRCODE = '28000';
    END IF;
    v_claims := v_body::jsonb;
    IF v_claims->>'b' IS DISTINCT FROM gatehouse.binding() THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: caller context belongs to another transaction', ERRCODE = '28000';
    END IF;
    RETURN v_claims;
END
$$;
REVOKE ALL ON FUNCTION gatehouse._verified() FROM PUBLIC;

-- Accessors for policies. Wrap them in a scalar subquery in policies —
-- `USING (customer_id = (SELECT gatehouse.claim('customer_id')))` — so the context is verified
-- once per statement, not once per row.
CREATE FUNCTION gatehouse.org() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT (gatehouse._verified()->>'org')::uuid $$;

CREATE FUNCTION gatehouse.endpoint() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT (gatehouse._verified()->>'endpoint')::uuid $$;

CREATE FUNCTION gatehouse.subject() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gatehouse._verified()->>'sub' $$;

CREATE FUNCTION gatehouse.subject_kind() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gatehouse._verified()->>'kind' $$;

CREATE FUNCTION gatehouse.email() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gatehouse._verified()->>'email' $$;

CREATE FUNCTION gatehouse.tool() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gatehouse._verified()->>'tool' $$;

CREATE FUNCTION gatehouse.scopes() RETURNS text[]
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY(SELECT jsonb_array_elements_text(gatehouse._verified()->'scopes')) $$;

CREATE FUNCTION gatehouse.has_scope(p_scope text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((gatehouse._verified()->'scopes') ? p_scope, false) $$;

CREATE FUNCTION gatehouse.claim(p_name text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gatehouse._verified()->'attrs'->>p_name $$;

-- The idempotency scope of the current caller and a key.
CREATE FUNCTION gatehouse._idempotency_scope(p_key text) RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb := gatehouse._verified();
BEGIN
    IF v IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: no caller context', ERRCODE = '28000';
    END IF;
    RETURN sha256(convert_to(jsonb_build_array(v->'org', v->'endpoint', v->'sub', v->'tool', p_key)::text, 'UTF8'));
END
$$;
REVOKE ALL ON FUNCTION gatehouse._idempotency_scope(text) FROM PUBLIC;

-- Starts a write made with an idempotency key. NULL: the key is new and is now held by this
-- transaction (a concurrent call with the same key waits for it). Otherwise the call was made
-- before: {"result": <its result>}. A key reused with other arguments is an error.
CREATE FUNCTION gatehouse.idempotency_begin(p_key text, p_arguments_hash bytea) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_scope bytea := gatehouse._idempotency_scope(p_key);
    v_hash  bytea;
    v_result jsonb;
BEGIN
    -- Keys are kept for a day.
    DELETE FROM gatehouse.idempotency WHERE scope = v_scope AND created_at < now() - interval '1 day';
    IF random() < 0.01 THEN
        DELETE FROM gatehouse.idempotency WHERE created_at < now() - interval '1 day';
        DELETE FROM gatehouse.confirmations WHERE expires_at < now();
    END IF;
    INSERT INTO gatehouse.idempotency (scope, arguments_hash) VALUES (v_scope, p_arguments_hash)
        ON CONFLICT (scope) DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT i.arguments_hash, i.result INTO v_hash, v_result FROM gatehouse.idempotency i WHERE i.scope = v_scope;
    IF v_hash <> p_arguments_hash THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: idempotency key already used with other arguments', ERRCODE = '22023';
    END IF;
    RETURN jsonb_build_object('result', v_result);
END
$$;

-- Records the result of a write started with `idempotency_begin`, in the same transaction.
CREATE FUNCTION gatehouse.idempotency_finish(p_key text, p_result jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE gatehouse.idempotency SET result = p_result
     WHERE scope = gatehouse._idempotency_scope(p_key) AND result IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: idempotency key not held by this call', ERRCODE = '22023';
    END IF;
END
$$;

-- Spends a destructive call's confirmation (each works once), in the call's transaction.
CREATE FUNCTION gatehouse.confirmation_use(p_nonce bytea, p_expires_at timestamptz) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF gatehouse._verified() IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: no caller context', ERRCODE = '28000';
    END IF;
    INSERT INTO gatehouse.confirmations (nonce, expires_at) VALUES (p_nonce, p_expires_at)
        ON CONFLICT (nonce) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING MESSAGE = 'gatehouse: confirmation already used', ERRCODE = '22023';
    END IF;
END
$$;

DO $grants$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'gatehouse.binding()', 'gatehouse.org()', 'gatehouse.endpoint()', 'gatehouse.subject()',
        'gatehouse.subject_kind()', 'gatehouse.email()', 'gatehouse.tool()', 'gatehouse.scopes()',
        'gatehouse.has_scope(text)', 'gatehouse.claim(text)',
        'gatehouse.idempotency_begin(text, bytea)', 'gatehouse.idempotency_finish(text, jsonb)',
        'gatehouse.confirmation_use(bytea, timestamptz)'
    ] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
    END LOOP;
END
$grants$;

INSERT INTO gatehouse.schema_version (version) VALUES (1);

RESET ROLE;
COMMIT;
