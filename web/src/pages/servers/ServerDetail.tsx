// One domain server: its sync status and last error, its write-only credential, and its tools
// with their status and poisoning flags, approved or rejected after a side-by-side review.
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { ConfirmDialog, EmptyState, ErrorState, FormAlert, Loading, PageHeader, formErrors } from "../../components";
import { Section, StatusBadge, when } from "./common";
import { SyncReport, SyncStatus } from "./Servers";
import { AuthFields, authBody, emptyAuth, type AuthDraft } from "./AuthFields";
import { ToolReview } from "./ToolReview";

type Tool = Schemas["ToolOut"];

function Credential({ org, server }: { org: string; server: Schemas["ServerOut"] }) {
  const [editing, setEditing] = useState(false);
  const [auth, setAuth] = useState<AuthDraft>(emptyAuth);
  const qc = useQueryClient();
  const save = useMutation({
    mutationFn: () =>
      unwrap(
        api.PATCH("/api/v1/orgs/{org}/servers/{server_id}", {
          params: { path: { org, server_id: server.id } },
          body: { auth: authBody(auth) },
        }),
      ),
    onSuccess: async () => {
      setEditing(false);
      setAuth(emptyAuth);
      await qc.invalidateQueries({ queryKey: ["org", org] });
    },
  });
  const errors = formErrors(save.error, ["auth"]);
  const a = server.auth;
  return (
    <div>
      <dl className="details">
        <dt>Kind</dt>
        <dd>{a.kind}</dd>
        <dt>Secret</dt>
        <dd>{a.has_secret ? "stored (sealed, never shown)" : "none"}</dd>
        {a.header_name && (
          <>
            <dt>Header</dt>
            <dd className="mono">{a.header_name}</dd>
          </>
        )}
        {a.token_url && (
          <>
            <dt>Token URL</dt>
            <dd className="mono">{a.token_url}</dd>
          </>
        )}
        {a.client_id && (
          <>
            <dt>Client ID</dt>
            <dd className="mono">{a.client_id}</dd>
          </>
        )}
      </dl>
      {editing ? (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            save.mutate();
          }}
          noValidate
        >
          <FormAlert message={errors.form} />
          <AuthFields value={auth} onChange={setAuth} error={errors.field.auth} />
          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={save.isPending}>
              Replace credential
            </button>
            <button type="button" className="btn" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        </form>
      ) : (
        <button type="button" className="btn" onClick={() => setEditing(true)}>
          Replace credential
        </button>
      )}
    </div>
  );
}

function Flags({ tool }: { tool: Tool }) {
  if (!tool.flags.length) return <span className="muted">none</span>;
  return (
    <ul className="flag-list">
      {tool.flags.map((f, i) => (
        <li key={i}>
          <span className="badge badge-danger">{f.code.replace(/_/g, " ")}</span> {f.detail}{" "}
          <span className="muted">at</span> <span className="mono">{f.location}</span>
          <div className="mono">“{f.excerpt}”</div>
        </li>
      ))}
    </ul>
  );
}

export default function ServerDetail() {
  const { slug: org, role } = useCurrentOrg();
  const { serverId = "" } = useParams();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const canEdit = roleAtLeast(role, "admin");
  const [reviewing, setReviewing] = useState<string | null>(null);
  const server = useQuery({
    queryKey: ["org", org, "servers", serverId],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/servers/{server_id}", { params: { path: { org, server_id: serverId } } })),
  });
  const tools = useQuery({
    queryKey: ["org", org, "servers", serverId, "tools"],
    queryFn: () =>
      unwrap(api.GET("/api/v1/orgs/{org}/servers/{server_id}/tools", { params: { path: { org, server_id: serverId } } })),
  });
  const sync = useMutation({
    mutationFn: () =>
      unwrap(api.POST("/api/v1/orgs/{org}/servers/{server_id}/sync", { params: { path: { org, server_id: serverId } } })),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["org", org] }),
  });
  const decideAll = useMutation({
    mutationFn: (decision: Schemas["Decision"]) =>
      unwrap(
        api.POST("/api/v1/orgs/{org}/servers/{server_id}/tools/decisions", {
          params: { path: { org, server_id: serverId } },
          body: { decision },
        }),
      ),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["org", org] }),
  });
  if (server.isPending) return <Loading />;
  if (server.error) return <ErrorState error={server.error} retry={() => server.refetch()} />;
  const s = server.data;
  const waiting = (tools.data ?? []).filter((t) => t.status === "pending" || t.status === "changed");
  const reviewTool = tools.data?.find((t) => t.id === reviewing);
  return (
    <>
      <PageHeader
        title={s.name}
        description={
          <>
            <Link to={`/orgs/${org}/servers`}>Servers</Link> / <span className="mono">{s.slug}</span>
          </>
        }
        actions={
          canEdit ? (
            <>
              <button type="button" className="btn" onClick={() => sync.mutate()} disabled={sync.isPending}>
                {sync.isPending ? "Syncing…" : "Sync now"}
              </button>
              <ConfirmDialog
                trigger={
                  <button type="button" className="btn btn-danger">
                    Delete
                  </button>
                }
                title={`Delete ${s.name}?`}
                description="Its tools are deleted with it, and endpoints stop exposing them."
                confirmLabel="Delete server"
                danger
                typeToConfirm={s.slug}
                onConfirm={async () => {
                  await unwrap(api.DELETE("/api/v1/orgs/{org}/servers/{server_id}", { params: { path: { org, server_id: s.id } } }));
                  await qc.invalidateQueries({ queryKey: ["org", org] });
                  navigate(`/orgs/${org}/servers`);
                }}
              />
            </>
          ) : undefined
        }
      />
      {sync.data && <SyncReport report={sync.data.sync} />}
      <FormAlert message={formErrors(sync.error ?? decideAll.error, []).form} />
      <Section title="Connection">
        <dl className="details">
          <dt>URL</dt>
          <dd className="mono">{s.url}</dd>
          <dt>Transport</dt>
          <dd>{s.transport}</dd>
          <dt>Sync</dt>
          <dd>
            <SyncStatus server={s} />
          </dd>
          <dt>Caller assertion</dt>
          <dd>{s.send_caller_assertion ? "sent" : "not sent"}</dd>
        </dl>
      </Section>
      {canEdit && (
        <Section title="Credential">
          <Credential org={org} server={s} />
        </Section>
      )}
      {reviewTool && (
        <ToolReview
          org={org}
          tool={reviewTool}
          canDecide={canEdit}
          onClose={() => setReviewing(null)}
        />
      )}
      <Section
        title="Tools"
        actions={
          canEdit && waiting.length > 0 ? (
            <button type="button" className="btn" onClick={() => decideAll.mutate("approve")} disabled={decideAll.isPending}>
              Approve all {waiting.length} waiting
            </button>
          ) : undefined
        }
      >
        {tools.isPending ? (
          <Loading />
        ) : tools.error ? (
          <ErrorState error={tools.error} retry={() => tools.refetch()} />
        ) : tools.data.length === 0 ? (
          <EmptyState title="No tools">The server listed no tools at its last sync.</EmptyState>
        ) : (
          <div className="table-wrap" role="region" aria-label="Tools" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  <th scope="col">Tool</th>
                  <th scope="col">Status</th>
                  <th scope="col">Flags</th>
                  <th scope="col">Last seen</th>
                  <th scope="col">
                    Actions
                  </th>
                </tr>
              </thead>
              <tbody>
                {tools.data.map((t) => (
                  <tr key={t.id}>
                    <td data-label="Tool">
                      <span className="mono">{t.exposed_name}</span>
                      {t.description_escaped && <div className="muted">{t.description_escaped}</div>}
                    </td>
                    <td data-label="Status">
                      <StatusBadge status={t.status} />
                    </td>
                    <td data-label="Flags">
                      <Flags tool={t} />
                    </td>
                    <td data-label="Last seen">{when(t.last_seen_at)}</td>
                    <td>
                      <button type="button" className="btn btn-small" onClick={() => setReviewing(t.id)}>
                        {canEdit && (t.status === "pending" || t.status === "changed") ? `Review ${t.name}` : `View ${t.name}`}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
    </>
  );
}
