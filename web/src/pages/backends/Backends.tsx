// Hosted SQL backends: the list, and registration of a PostgreSQL backend (connection string
// write-only, TLS mode, CA certificate) followed by a connection test.
import { useState, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { EmptyState, ErrorState, Field, FormAlert, Loading, PageHeader, Table, formErrors } from "../../components";
import { Section, when } from "../servers/common";

export type Backend = Schemas["BackendOut"];
export type TlsMode = Schemas["TlsModeIo"];

export const TLS_MODES: { value: TlsMode; label: string }[] = [
  { value: "verify_full", label: "verify-full: TLS, CA and host name checked" },
  { value: "verify_ca", label: "verify-ca: TLS, CA checked" },
  { value: "require", label: "require: TLS, certificate not checked" },
  { value: "disable", label: "disable: no TLS" },
];

export function backendsQuery(org: string) {
  return {
    queryKey: ["org", org, "backends"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/backends", { params: { path: { org } } })),
  };
}

/** The outcome of the last connection test, as the backend recorded it. */
export function TestStatus({ backend }: { backend: Backend }) {
  const last = backend.last_test as { ok?: boolean; error?: string } | null | undefined;
  if (!last || !backend.last_tested_at) return <span className="badge badge-warn">not tested</span>;
  return (
    <span>
      {last.ok ? <span className="badge badge-ok">ready</span> : <span className="badge badge-danger">not ready</span>}{" "}
      <span className="muted">
        {when(backend.last_tested_at)}
        {last.error ? ` — ${last.error}` : ""}
      </span>
    </span>
  );
}

function RegisterBackend({ org, onDone }: { org: string; onDone: (b: Backend) => void }) {
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [dsn, setDsn] = useState("");
  const [tls, setTls] = useState<TlsMode>("verify_full");
  const [caPem, setCaPem] = useState("");
  const [schemas, setSchemas] = useState("public");
  const [ownerRole, setOwnerRole] = useState("");
  const qc = useQueryClient();
  const create = useMutation({
    mutationFn: async () => {
      const b = await unwrap(
        api.POST("/api/v1/orgs/{org}/backends", {
          params: { path: { org } },
          body: {
            name,
            slug,
            dsn,
            tls_mode: tls,
            ca_pem: caPem.trim() ? caPem : null,
            owner_role: ownerRole.trim() || null,
            allowed_schemas: schemas
              .split(",")
              .map((s) => s.trim())
              .filter(Boolean),
          },
        }),
      );
      // Test the connection at once; the outcome (good or bad) is recorded on the backend and
      // shown on its page, so a failure here does not undo the registration.
      await api.POST("/api/v1/orgs/{org}/backends/{backend_id}/test", { params: { path: { org, backend_id: b.id } } });
      return b;
    },
    onSuccess: async (b) => {
      await qc.invalidateQueries({ queryKey: ["org", org, "backends"] });
      onDone(b);
    },
  });
  const errors = formErrors(create.error, ["name", "slug", "dsn", "tls_mode", "ca_pem", "allowed_schemas", "owner_role"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate();
  }
  return (
    <form onSubmit={submit} noValidate aria-label="Register a backend">
      <FormAlert message={errors.form} />
      <div className="grid">
        <Field label="Name" error={errors.field.name}>
          <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Slug" hint="Prefix of its tools at endpoints (slug__tool); cannot change." error={errors.field.slug}>
          <input value={slug} onChange={(e) => setSlug(e.target.value)} autoComplete="off" spellCheck={false} />
        </Field>
      </div>
      <Field
        label="Connection string"
        hint="postgres://role:password@host:5432/database of a dedicated role that owns nothing and cannot bypass row-level security. Stored sealed; never shown again."
        error={errors.field.dsn}
      >
        <input type="password" value={dsn} onChange={(e) => setDsn(e.target.value)} autoComplete="off" spellCheck={false} />
      </Field>
      <div className="grid">
        <Field label="TLS mode" error={errors.field.tls_mode}>
          <select value={tls} onChange={(e) => setTls(e.target.value as TlsMode)}>
            {TLS_MODES.map((m) => (
              <option key={m.value} value={m.value}>
                {m.label}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Schemas" hint="The search_path tools run with, comma-separated." error={errors.field.allowed_schemas}>
          <input value={schemas} onChange={(e) => setSchemas(e.target.value)} autoComplete="off" spellCheck={false} />
        </Field>
      </div>
      <Field
        label="Owner role (optional)"
        hint="The NOLOGIN role the setup script creates to own the gatehouse schema; default gatehouse_context_owner."
        error={errors.field.owner_role}
      >
        <input value={ownerRole} onChange={(e) => setOwnerRole(e.target.value)} autoComplete="off" spellCheck={false} />
      </Field>
      {(tls === "verify_full" || tls === "verify_ca") && (
        <Field label="CA certificate (PEM)" hint="Optional: the CA to verify the backend's certificate with." error={errors.field.ca_pem}>
          <textarea rows={4} value={caPem} onChange={(e) => setCaPem(e.target.value)} spellCheck={false} className="mono" />
        </Field>
      )}
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          {create.isPending ? "Registering and testing…" : "Register and test connection"}
        </button>
      </div>
    </form>
  );
}

export default function Backends() {
  const { slug: org, role } = useCurrentOrg();
  const backends = useQuery(backendsQuery(org));
  const [registering, setRegistering] = useState(false);
  const navigate = useNavigate();
  const canEdit = roleAtLeast(role, "admin");
  return (
    <>
      <PageHeader
        title="SQL backends"
        description="PostgreSQL databases whose SQL tools Gatehouse hosts, each call under the caller's verified identity and row-level security."
        actions={
          canEdit && !registering ? (
            <button type="button" className="btn btn-primary" onClick={() => setRegistering(true)}>
              Register a backend
            </button>
          ) : undefined
        }
      />
      {registering && (
        <Section
          title="Register a backend"
          actions={
            <button type="button" className="btn" onClick={() => setRegistering(false)}>
              Cancel
            </button>
          }
        >
          <RegisterBackend org={org} onDone={(b) => navigate(b.id)} />
        </Section>
      )}
      {backends.isPending ? (
        <Loading />
      ) : backends.error ? (
        <ErrorState error={backends.error} retry={() => backends.refetch()} />
      ) : backends.data.length === 0 ? (
        <EmptyState title="No backends yet">Register a PostgreSQL backend to define SQL tools on it.</EmptyState>
      ) : (
        <Table
          caption="SQL backends"
          rows={backends.data}
          rowKey={(b) => b.id}
          columns={[
            { header: "Name", cell: (b) => <Link to={b.id}>{b.name}</Link> },
            { header: "Slug", cell: (b) => <span className="mono">{b.slug}</span> },
            { header: "Database", cell: (b) => <span className="mono">{b.target}</span> },
            { header: "TLS", cell: (b) => b.tls_mode },
            { header: "Connection", cell: (b) => <TestStatus backend={b} /> },
          ]}
        />
      )}
    </>
  );
}
