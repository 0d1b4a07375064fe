// Domain servers: the list with sync status, and registration with a connection test (the API
// lists the server's tools while registering it and reports what it found).
import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { EmptyState, ErrorState, Field, FormAlert, Loading, PageHeader, Table, formErrors } from "../../components";
import { Section, when } from "./common";
import { AuthFields, authBody, emptyAuth, type AuthDraft } from "./AuthFields";

type Server = Schemas["ServerOut"];
type Synced = Schemas["ServerSynced"];

export function serversQuery(org: string) {
  return {
    queryKey: ["org", org, "servers"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/servers", { params: { path: { org } } })),
  };
}

export function SyncStatus({ server }: { server: Server }) {
  if (server.last_sync_error) {
    return (
      <span>
        <span className="badge badge-danger">sync failed</span> <span className="muted">{server.last_sync_error}</span>
      </span>
    );
  }
  if (!server.last_synced_at) return <span className="badge badge-warn">never synced</span>;
  return (
    <span>
      <span className="badge badge-ok">synced</span> <span className="muted">{when(server.last_synced_at)}</span>
    </span>
  );
}

/** What a sync found, in words. */
export function SyncReport({ report }: { report: Schemas["SyncReport"] }) {
  if (report.error) {
    return (
      <div className="alert alert-error" role="alert">
        The connection test failed: {report.error}
      </div>
    );
  }
  const parts: [string, string[]][] = [
    ["new, waiting for approval", report.new],
    ["changed, withheld until re-approved", report.changed],
    ["back to the approved definition", report.restored],
    ["no longer listed", report.removed],
    ["skipped", report.skipped],
  ];
  return (
    <div className="alert alert-ok" role="status">
      Connected: the server lists {report.tools_listed} tool{report.tools_listed === 1 ? "" : "s"}.
      {parts
        .filter(([, names]) => names.length)
        .map(([label, names]) => (
          <div key={label}>
            {names.length} {label}: <span className="mono">{names.join(", ")}</span>
          </div>
        ))}
    </div>
  );
}

function RegisterServer({ org, onDone }: { org: string; onDone: (s: Synced) => void }) {
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [url, setUrl] = useState("");
  const [transport, setTransport] = useState<Schemas["Transport"]>("streamable_http");
  const [auth, setAuth] = useState<AuthDraft>(emptyAuth);
  const [assertion, setAssertion] = useState(false);
  const qc = useQueryClient();
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST("/api/v1/orgs/{org}/servers", {
          params: { path: { org } },
          body: { name, slug, url, transport, auth: authBody(auth), send_caller_assertion: assertion },
        }),
      ),
    onSuccess: async (synced) => {
      await qc.invalidateQueries({ queryKey: ["org", org] });
      onDone(synced);
    },
  });
  const errors = formErrors(create.error, ["name", "slug", "url", "transport", "auth"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate();
  }
  return (
    <form onSubmit={submit} noValidate aria-label="Register a server">
      <FormAlert message={errors.form} />
      <div className="grid">
        <Field label="Name" error={errors.field.name}>
          <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Slug" hint="Prefix of its tools at endpoints (slug__tool); cannot change." error={errors.field.slug}>
          <input value={slug} onChange={(e) => setSlug(e.target.value)} autoComplete="off" spellCheck={false} />
        </Field>
      </div>
      <Field label="MCP URL" hint="e.g. https://orders.internal.example/mcp" error={errors.field.url}>
        <input type="url" value={url} onChange={(e) => setUrl(e.target.value)} autoComplete="off" spellCheck={false} />
      </Field>
      <Field label="Transport" error={errors.field.transport}>
        <select value={transport} onChange={(e) => setTransport(e.target.value as Schemas["Transport"])}>
          <option value="streamable_http">Streamable HTTP</option>
          <option value="http_sse">HTTP + SSE (legacy)</option>
        </select>
      </Field>
      <AuthFields value={auth} onChange={setAuth} error={errors.field.auth} />
      <label className="check">
        <input type="checkbox" checked={assertion} onChange={(e) => setAssertion(e.target.checked)} />
        Send the server a signed assertion naming the org, endpoint and caller
      </label>
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          {create.isPending ? "Testing the connection…" : "Register and test connection"}
        </button>
      </div>
    </form>
  );
}

export default function Servers() {
  const { slug: org, role } = useCurrentOrg();
  const servers = useQuery(serversQuery(org));
  const [registering, setRegistering] = useState(false);
  const [result, setResult] = useState<Synced | null>(null);
  const canEdit = roleAtLeast(role, "admin");
  return (
    <>
      <PageHeader
        title="Servers"
        description="The MCP servers of your domain. Their tools are served only once approved."
        actions={
          canEdit && !registering ? (
            <button type="button" className="btn btn-primary" onClick={() => setRegistering(true)}>
              Register a server
            </button>
          ) : undefined
        }
      />
      {result && (
        <div>
          <SyncReport report={result.sync} />
          <p>
            <Link to={result.server.id}>Review the tools of {result.server.name}</Link>
          </p>
        </div>
      )}
      {registering && (
        <Section
          title="Register a server"
          actions={
            <button type="button" className="btn" onClick={() => setRegistering(false)}>
              Cancel
            </button>
          }
        >
          <RegisterServer
            org={org}
            onDone={(s) => {
              setResult(s);
              setRegistering(false);
            }}
          />
        </Section>
      )}
      {servers.isPending ? (
        <Loading />
      ) : servers.error ? (
        <ErrorState error={servers.error} retry={() => servers.refetch()} />
      ) : servers.data.length === 0 ? (
        <EmptyState title="No servers yet">Register an MCP server to review and approve its tools.</EmptyState>
      ) : (
        <Table
          caption="Servers"
          rows={servers.data}
          rowKey={(s) => s.id}
          columns={[
            { header: "Name", cell: (s) => <Link to={s.id}>{s.name}</Link> },
            { header: "Slug", cell: (s) => <span className="mono">{s.slug}</span> },
            { header: "URL", cell: (s) => <span className="mono">{s.url}</span> },
            { header: "Sync", cell: (s) => <SyncStatus server={s} /> },
          ]}
        />
      )}
    </>
  );
}
