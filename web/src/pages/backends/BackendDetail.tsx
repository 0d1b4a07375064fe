// One hosted SQL backend: where it is (never its credentials), the connection test, the setup
// script, its SQL tools with each one's inspection report, and its reference tables.
import { Link, useNavigate, useParams } from "react-router";
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { ConfirmDialog, CopyButton, EmptyState, ErrorState, Field, FormAlert, Loading, PageHeader, formErrors } from "../../components";
import { Section, StatusBadge } from "../servers/common";
import { TestStatus, TLS_MODES, type Backend, type TlsMode } from "./Backends";
import "./backends.css";
import { InspectionReport, ReferenceToggle, asInspection } from "./inspection";

export function backendQuery(org: string, backendId: string) {
  return {
    queryKey: ["org", org, "backends", backendId],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/backends/{backend_id}", { params: { path: { org, backend_id: backendId } } })),
  };
}

export function referenceTablesQuery(org: string, backendId: string) {
  return {
    queryKey: ["org", org, "backends", backendId, "reference-tables"],
    queryFn: () =>
      unwrap(api.GET("/api/v1/orgs/{org}/backends/{backend_id}/reference-tables", { params: { path: { org, backend_id: backendId } } })),
  };
}

export function sqlToolsQuery(org: string, backendId: string) {
  return {
    queryKey: ["org", org, "backends", backendId, "tools"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/backends/{backend_id}/tools", { params: { path: { org, backend_id: backendId } } })),
  };
}

interface TestResult {
  ready: boolean;
  upgrade_needed?: boolean;
  status?: {
    server_version: string;
    role: { name: string; superuser: boolean; bypassrls: boolean; bypass_via: string[] };
    schema_version: number;
    required_schema_version: number;
    context_key_installed: boolean;
  };
}

function ConnectionTest({ org, backendId }: { org: string; backendId: string }) {
  const qc = useQueryClient();
  const test = useMutation({
    mutationFn: () =>
      unwrap(api.POST("/api/v1/orgs/{org}/backends/{backend_id}/test", { params: { path: { org, backend_id: backendId } } })) as Promise<TestResult>,
    onSettled: () => qc.invalidateQueries({ queryKey: ["org", org, "backends"] }),
  });
  const s = test.data?.status;
  return (
    <div>
      <button type="button" className="btn" onClick={() => test.mutate()} disabled={test.isPending}>
        {test.isPending ? "Testing…" : "Test connection"}
      </button>
      <FormAlert message={formErrors(test.error, []).form} />
      {test.data && s && (
        <div className={test.data.ready ? "alert alert-ok" : "alert alert-error"} role="status">
          {test.data.ready ? "Ready." : "Not ready."} PostgreSQL {s.server_version}; tool role <span className="mono">{s.role.name}</span>{" "}
          {s.role.superuser || s.role.bypassrls || s.role.bypass_via.length
            ? "can bypass row-level security (use a role without SUPERUSER or BYPASSRLS)"
            : "cannot bypass row-level security"}
          ; gatehouse schema version {s.schema_version} of {s.required_schema_version}
          {test.data.upgrade_needed ? " (run the setup script)" : ""}; context key {s.context_key_installed ? "installed" : "not installed"}.
        </div>
      )}
    </div>
  );
}

/** Changes the name or the connection (a blank connection string or CA keeps the stored one). */
function EditConnection({ org, backend, onDone }: { org: string; backend: Backend; onDone: () => void }) {
  const [name, setName] = useState(backend.name);
  const [dsn, setDsn] = useState("");
  const [tls, setTls] = useState<TlsMode>(backend.tls_mode);
  const [caPem, setCaPem] = useState("");
  const [removeCa, setRemoveCa] = useState(false);
  const qc = useQueryClient();
  const save = useMutation({
    mutationFn: () => {
      const body: Schemas["BackendPatch"] = {};
      if (name !== backend.name) body.name = name;
      if (dsn.trim()) body.dsn = dsn;
      if (tls !== backend.tls_mode) body.tls_mode = tls;
      if (removeCa) body.ca_pem = "";
      else if (caPem.trim()) body.ca_pem = caPem;
      return unwrap(api.PATCH("/api/v1/orgs/{org}/backends/{backend_id}", { params: { path: { org, backend_id: backend.id } }, body }));
    },
    onSuccess: async () => {
      await qc.invalidateQueries({ queryKey: ["org", org, "backends"] });
      onDone();
    },
  });
  const errors = formErrors(save.error, ["name", "dsn", "tls_mode", "ca_pem"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    save.mutate();
  }
  return (
    <form onSubmit={submit} noValidate aria-label="Change the connection">
      <FormAlert message={errors.form} />
      <p className="muted">Changing the connection string, TLS settings or CA withholds the approved tools until they are approved again.</p>
      <Field label="Name" error={errors.field.name}>
        <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" />
      </Field>
      <Field label="New connection string" hint="Leave blank to keep the stored one." error={errors.field.dsn}>
        <input type="password" value={dsn} onChange={(e) => setDsn(e.target.value)} autoComplete="off" spellCheck={false} />
      </Field>
      <Field label="TLS mode" error={errors.field.tls_mode}>
        <select value={tls} onChange={(e) => setTls(e.target.value as TlsMode)}>
          {TLS_MODES.map((m) => (
            <option key={m.value} value={m.value}>
              {m.label}
            </option>
          ))}
        </select>
      </Field>
      <Field label="New CA certificate (PEM)" hint="Leave blank to keep the stored one." error={errors.field.ca_pem}>
        <textarea rows={3} className="mono" value={caPem} disabled={removeCa} onChange={(e) => setCaPem(e.target.value)} spellCheck={false} />
      </Field>
      {backend.has_ca_pem && (
        <label className="check">
          <input type="checkbox" checked={removeCa} onChange={(e) => setRemoveCa(e.target.checked)} />
          Remove the stored CA certificate
        </label>
      )}
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={save.isPending}>
          Save connection
        </button>
        <button type="button" className="btn" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function SetupSql({ org, backendId, installed }: { org: string; backendId: string; installed: number }) {
  const script = useMutation({
    mutationFn: async () => {
      const r = await api.GET("/api/v1/orgs/{org}/backends/{backend_id}/setup-sql", {
        params: { path: { org, backend_id: backendId }, query: installed ? { installed } : {} },
        parseAs: "text",
      });
      if (!r.response.ok) return unwrap(Promise.resolve(r)) as Promise<never>;
      return r.data as unknown as string;
    },
  });
  return (
    <div>
      <p>
        Run this script once on the database as a superuser (<span className="mono">psql -v ON_ERROR_STOP=1 -f setup.sql</span>). It
        installs the <span className="mono">gatehouse</span> schema and this backend's context key: keep it private.
      </p>
      <button type="button" className="btn" onClick={() => script.mutate()} disabled={script.isPending}>
        Show the setup script
      </button>
      <FormAlert message={formErrors(script.error, []).form} />
      {script.data && (
        <div>
          <CopyButton text={script.data} label="Copy the setup script" />
          <pre className="code" tabIndex={0} aria-label="Setup SQL">
            {script.data}
          </pre>
        </div>
      )}
    </div>
  );
}

export default function BackendDetail() {
  const { slug: org, role } = useCurrentOrg();
  const { backendId = "" } = useParams();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const backend = useQuery(backendQuery(org, backendId));
  const tools = useQuery(sqlToolsQuery(org, backendId));
  const reference = useQuery(referenceTablesQuery(org, backendId));
  const [editing, setEditing] = useState(false);
  const isAdmin = roleAtLeast(role, "admin");
  const isDeveloper = roleAtLeast(role, "developer");
  const remove = useMutation({
    mutationFn: () => unwrap(api.DELETE("/api/v1/orgs/{org}/backends/{backend_id}", { params: { path: { org, backend_id: backendId } } })),
    onSuccess: async () => {
      await qc.invalidateQueries({ queryKey: ["org", org, "backends"] });
      navigate("..", { relative: "path" });
    },
  });
  if (backend.isPending) return <Loading />;
  if (backend.error) return <ErrorState error={backend.error} retry={() => backend.refetch()} />;
  const b = backend.data;
  const lastStatus = (b.last_test as { status?: { schema_version?: number } } | null | undefined)?.status;
  return (
    <>
      <p>
        <Link to=".." relative="path">← SQL backends</Link>
      </p>
      <PageHeader
        title={b.name}
        description={`Tools are exposed as ${b.slug}__<tool>.`}
        actions={
          isAdmin ? (
            <ConfirmDialog
              trigger={
                <button type="button" className="btn">
                  Delete backend
                </button>
              }
              title={`Delete ${b.name}?`}
              description="Its SQL tools are deleted with it and disappear from every endpoint."
              confirmLabel="Delete"
              danger
              typeToConfirm={b.slug}
              onConfirm={() => remove.mutateAsync()}
            />
          ) : undefined
        }
      />
      <Section
        title="Connection"
        actions={
          isAdmin && !editing ? (
            <button type="button" className="btn" onClick={() => setEditing(true)}>
              Change
            </button>
          ) : undefined
        }
      >
        {editing && <EditConnection org={org} backend={b} onDone={() => setEditing(false)} />}
        <dl className="details">
          <dt>Database</dt>
          <dd className="mono">{b.target}</dd>
          <dt>Credentials</dt>
          <dd>stored sealed, never shown</dd>
          <dt>TLS</dt>
          <dd>
            {TLS_MODES.find((m) => m.value === b.tls_mode)?.label ?? b.tls_mode}
            {b.has_ca_pem ? "; own CA certificate" : ""}
          </dd>
          <dt>Schemas</dt>
          <dd className="mono">{b.allowed_schemas.join(", ")}</dd>
          <dt>Extra functions</dt>
          <dd className="mono">{b.allowed_functions.length ? b.allowed_functions.join(", ") : "none"}</dd>
          <dt>Limits</dt>
          <dd>
            {b.max_rows} rows, {b.statement_timeout_ms} ms per statement
          </dd>
          <dt>Last test</dt>
          <dd>
            <TestStatus backend={b} />
          </dd>
        </dl>
        {isDeveloper && <ConnectionTest org={org} backendId={b.id} />}
      </Section>
      {isAdmin && (
        <Section title="Setup script">
          <SetupSql org={org} backendId={b.id} installed={lastStatus?.schema_version ?? 0} />
        </Section>
      )}
      <Section
        title="SQL tools"
        actions={
          isDeveloper ? (
            <Link className="btn btn-primary" to="tools/new">
              New SQL tool
            </Link>
          ) : undefined
        }
      >
        {tools.isPending || reference.isPending ? (
          <Loading />
        ) : tools.error || reference.error ? (
          <ErrorState error={tools.error ?? reference.error} retry={() => (tools.refetch(), reference.refetch())} />
        ) : tools.data.length === 0 ? (
          <EmptyState title="No SQL tools yet">Define a tool: one SELECT, INSERT, UPDATE or DELETE with :named parameters.</EmptyState>
        ) : (
          tools.data.map((t) => {
            const inspection = asInspection(t.inspection);
            return (
              <article key={t.id} className="sql-tool" aria-label={`Tool ${t.name}`}>
                <h3>
                  <Link to={`tools/${t.id}`}>{t.name}</Link> <StatusBadge status={t.status} />{" "}
                  <span className="badge">{t.access}</span>
                  {t.destructive && <span className="badge badge-warn">destructive</span>}
                </h3>
                <pre className="code" tabIndex={0}>{t.sql}</pre>
                {inspection ? (
                  <InspectionReport org={org} backendId={b.id} inspection={inspection} reference={reference.data} canEdit={isAdmin} />
                ) : (
                  <p className="muted">Not inspected yet.</p>
                )}
              </article>
            );
          })
        )}
      </Section>
      <Section title="Reference tables">
        <p className="muted">Tenant-neutral tables that tools may read without row-level security.</p>
        {reference.isPending ? (
          <Loading />
        ) : reference.error ? (
          <ErrorState error={reference.error} retry={() => reference.refetch()} />
        ) : reference.data.length === 0 ? (
          <EmptyState title="No reference tables">Mark a table from a tool's inspection report.</EmptyState>
        ) : (
          <ul className="plain-list">
            {reference.data.map((r) => (
              <li key={`${r.schema}.${r.table}`}>
                <span className="mono">
                  {r.schema}.{r.table}
                </span>{" "}
                {isAdmin && <ReferenceToggle org={org} backendId={b.id} table={r} marked />}
              </li>
            ))}
          </ul>
        )}
      </Section>
    </>
  );
}
