// Tokens: service tokens and service clients (secrets shown once), the OAuth grants members gave
// applications, and the user's remembered consents; each can be revoked.
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { ConfirmDialog, EmptyState, ErrorState, Field, FormAlert, Loading, PageHeader, Table, formErrors } from "../../components";
import { SecretOnce, Section, when } from "../servers/common";
import { endpointsQuery } from "../endpoints/Endpoints";
import { scopesQuery } from "../scopes/Scopes";

type Endpoint = Schemas["EndpointOut"];

function EndpointName({ endpoints, id }: { endpoints: Endpoint[] | undefined; id: string }) {
  const e = endpoints?.find((x) => x.id === id);
  return <span className="mono">{e ? e.slug : id}</span>;
}

/** Name, endpoint and scopes: what service tokens and service clients are created with. */
function CredentialForm({
  org,
  kind,
  onCreated,
}: {
  org: string;
  kind: "token" | "client";
  onCreated: (secret: string, name: string) => void;
}) {
  const endpoints = useQuery(endpointsQuery(org));
  const scopes = useQuery(scopesQuery(org));
  const [name, setName] = useState("");
  const [endpointId, setEndpointId] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [expires, setExpires] = useState("");
  const qc = useQueryClient();
  const create = useMutation({
    mutationFn: async () => {
      if (kind === "token") {
        const t = await unwrap(
          api.POST("/api/v1/orgs/{org}/service-tokens", {
            params: { path: { org } },
            body: { name, endpoint_id: endpointId, scopes: chosen, expires_at: expires ? new Date(expires).toISOString() : null },
          }),
        );
        return t.secret;
      }
      const c = await unwrap(
        api.POST("/api/v1/orgs/{org}/service-clients", {
          params: { path: { org } },
          body: { name, endpoint_id: endpointId, scopes: chosen },
        }),
      );
      return `client_id=${c.client_id}\nclient_secret=${c.client_secret}\ntoken_endpoint=${c.token_endpoint}\nresource=${c.resource}`;
    },
    onSuccess: async (secret) => {
      onCreated(secret, name);
      setName("");
      setChosen([]);
      setExpires("");
      await qc.invalidateQueries({ queryKey: ["org", org, kind === "token" ? "service-tokens" : "service-clients"] });
    },
  });
  const errors = formErrors(create.error, ["name", "endpoint_id", "scopes", "expires_at"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate();
  }
  const label = kind === "token" ? "service token" : "service client";
  return (
    <form onSubmit={submit} noValidate aria-label={`Create a ${label}`}>
      <FormAlert message={errors.form} />
      <div className="grid">
        <Field label="Name" hint='What it is for, e.g. "nightly CI".' error={errors.field.name}>
          <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Endpoint" error={errors.field.endpoint_id}>
          <select value={endpointId} onChange={(e) => setEndpointId(e.target.value)}>
            <option value="">Choose an endpoint…</option>
            {(endpoints.data ?? []).map((e) => (
              <option key={e.id} value={e.id}>
                {e.name} ({e.slug})
              </option>
            ))}
          </select>
        </Field>
        {kind === "token" && (
          <Field label="Expires (optional)" error={errors.field.expires_at}>
            <input type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
          </Field>
        )}
      </div>
      <fieldset style={{ border: "none", padding: 0, margin: "0 0 14px" }}>
        <legend>Scopes</legend>
        {(scopes.data ?? []).length === 0 && <p className="muted">No scopes defined yet.</p>}
        {(scopes.data ?? []).map((s) => (
          <label className="check" key={s.id}>
            <input
              type="checkbox"
              checked={chosen.includes(s.name)}
              onChange={(e) => setChosen(e.target.checked ? [...chosen, s.name] : chosen.filter((n) => n !== s.name))}
            />
            <span className="mono">{s.name}</span>
          </label>
        ))}
        {errors.field.scopes && (
          <p className="field-error" role="alert">
            {errors.field.scopes}
          </p>
        )}
      </fieldset>
      <button type="submit" className="btn btn-primary" disabled={create.isPending}>
        Create {label}
      </button>
    </form>
  );
}

function ServiceTokens({ org, canEdit, endpoints }: { org: string; canEdit: boolean; endpoints: Endpoint[] | undefined }) {
  const tokens = useQuery({
    queryKey: ["org", org, "service-tokens"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/service-tokens", { params: { path: { org } } })),
  });
  const [created, setCreated] = useState<{ secret: string; name: string } | null>(null);
  const qc = useQueryClient();
  return (
    <Section title="Service tokens">
      {created && <SecretOnce label={`Token “${created.name}”`} secret={created.secret} />}
      {canEdit && <CredentialForm org={org} kind="token" onCreated={(secret, name) => setCreated({ secret, name })} />}
      <div style={{ marginTop: 16 }}>
        {tokens.isPending ? (
          <Loading />
        ) : tokens.error ? (
          <ErrorState error={tokens.error} retry={() => tokens.refetch()} />
        ) : tokens.data.length === 0 ? (
          <EmptyState title="No service tokens">A service token lets a program call one endpoint with chosen scopes.</EmptyState>
        ) : (
          <Table
            caption="Service tokens"
            rows={tokens.data}
            rowKey={(t) => t.id}
            columns={[
              { header: "Name", cell: (t) => t.name },
              { header: "Token", cell: (t) => <span className="mono">{t.token_prefix}…</span> },
              { header: "Endpoint", cell: (t) => <EndpointName endpoints={endpoints} id={t.endpoint_id} /> },
              { header: "Scopes", cell: (t) => <span className="mono">{t.scopes.join(" ") || "—"}</span> },
              { header: "Last used", cell: (t) => when(t.last_used_at) },
              {
                header: "State",
                cell: (t) =>
                  t.revoked_at ? (
                    <span className="badge">revoked</span>
                  ) : t.expires_at && new Date(t.expires_at) < new Date() ? (
                    <span className="badge">expired</span>
                  ) : (
                    <span className="badge badge-ok">active</span>
                  ),
              },
              {
                header: "Actions",
                cell: (t) =>
                  canEdit && !t.revoked_at ? (
                    <ConfirmDialog
                      trigger={
                        <button type="button" className="btn btn-small btn-danger">
                          Revoke {t.name}
                        </button>
                      }
                      title={`Revoke ${t.name}?`}
                      description="The dataplane refuses it within a second."
                      confirmLabel="Revoke token"
                      danger
                      onConfirm={async () => {
                        await unwrap(
                          api.DELETE("/api/v1/orgs/{org}/service-tokens/{service_token_id}", {
                            params: { path: { org, service_token_id: t.id } },
                          }),
                        );
                        await qc.invalidateQueries({ queryKey: ["org", org, "service-tokens"] });
                      }}
                    />
                  ) : null,
              },
            ]}
          />
        )}
      </div>
    </Section>
  );
}

function ServiceClients({ org, canEdit, endpoints }: { org: string; canEdit: boolean; endpoints: Endpoint[] | undefined }) {
  const clients = useQuery({
    queryKey: ["org", org, "service-clients"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/service-clients", { params: { path: { org } } })),
  });
  const [created, setCreated] = useState<{ secret: string; name: string } | null>(null);
  const qc = useQueryClient();
  return (
    <Section title="Service clients (OAuth client credentials)">
      {created && <SecretOnce label={`Client “${created.name}”`} secret={created.secret} />}
      {canEdit && <CredentialForm org={org} kind="client" onCreated={(secret, name) => setCreated({ secret, name })} />}
      <div style={{ marginTop: 16 }}>
        {clients.isPending ? (
          <Loading />
        ) : clients.error ? (
          <ErrorState error={clients.error} retry={() => clients.refetch()} />
        ) : clients.data.length === 0 ? (
          <EmptyState title="No service clients">A service client obtains short-lived tokens with the client_credentials grant.</EmptyState>
        ) : (
          <Table
            caption="Service clients"
            rows={clients.data}
            rowKey={(c) => c.id}
            columns={[
              { header: "Name", cell: (c) => c.name },
              { header: "Client ID", cell: (c) => <span className="mono">{c.client_id}</span> },
              { header: "Endpoint", cell: (c) => <EndpointName endpoints={endpoints} id={c.endpoint_id} /> },
              { header: "Scopes", cell: (c) => <span className="mono">{c.scopes.join(" ") || "—"}</span> },
              { header: "Last used", cell: (c) => when(c.last_used_at) },
              {
                header: "Actions",
                cell: (c) =>
                  c.revoked_at ? (
                    <span className="badge">revoked</span>
                  ) : canEdit ? (
                    <ConfirmDialog
                      trigger={
                        <button type="button" className="btn btn-small btn-danger">
                          Revoke {c.name}
                        </button>
                      }
                      title={`Revoke ${c.name}?`}
                      description="It gets no new token, and the tokens it holds stop working."
                      confirmLabel="Revoke client"
                      danger
                      onConfirm={async () => {
                        await unwrap(
                          api.DELETE("/api/v1/orgs/{org}/service-clients/{service_client_id}", {
                            params: { path: { org, service_client_id: c.id } },
                          }),
                        );
                        await qc.invalidateQueries({ queryKey: ["org", org, "service-clients"] });
                      }}
                    />
                  ) : null,
              },
            ]}
          />
        )}
      </div>
    </Section>
  );
}

function OAuthGrants({ org, endpoints }: { org: string; endpoints: Endpoint[] | undefined }) {
  const grants = useQuery({
    queryKey: ["org", org, "oauth-grants"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/oauth/grants", { params: { path: { org } } })),
  });
  const qc = useQueryClient();
  return (
    <Section title="OAuth grants of members">
      {grants.isPending ? (
        <Loading />
      ) : grants.error ? (
        <ErrorState error={grants.error} retry={() => grants.refetch()} />
      ) : grants.data.length === 0 ? (
        <EmptyState title="No live grants">Grants appear when members authorize an MCP client.</EmptyState>
      ) : (
        <Table
          caption="OAuth grants"
          rows={grants.data}
          rowKey={(g) => g.id}
          columns={[
            { header: "Application", cell: (g) => <span className="mono">{g.client_id}</span> },
            { header: "Member", cell: (g) => <span className="mono">{g.user_id}</span> },
            { header: "Endpoint", cell: (g) => <EndpointName endpoints={endpoints} id={g.endpoint_id} /> },
            { header: "Scopes", cell: (g) => <span className="mono">{g.scopes.join(" ") || "—"}</span> },
            { header: "Last used", cell: (g) => when(g.last_used_at) },
            {
              header: "Actions",
              cell: (g) => (
                <ConfirmDialog
                  trigger={
                    <button type="button" className="btn btn-small btn-danger">
                      Revoke grant
                    </button>
                  }
                  title="Revoke this grant?"
                  description="The application's tokens from it stop working; the member must authorize again."
                  confirmLabel="Revoke grant"
                  danger
                  onConfirm={async () => {
                    await unwrap(api.POST("/api/v1/orgs/{org}/oauth/grants/revoke", { params: { path: { org } }, body: { grant_id: g.id } }));
                    await qc.invalidateQueries({ queryKey: ["org", org, "oauth-grants"] });
                  }}
                />
              ),
            },
          ]}
        />
      )}
    </Section>
  );
}

function Consents({ org, endpoints }: { org: string; endpoints: Endpoint[] | undefined }) {
  const consents = useQuery({
    queryKey: ["org", org, "oauth-consents"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/oauth/consents", { params: { path: { org } } })),
  });
  const qc = useQueryClient();
  return (
    <Section title="Your consents">
      {consents.isPending ? (
        <Loading />
      ) : consents.error ? (
        <ErrorState error={consents.error} retry={() => consents.refetch()} />
      ) : consents.data.length === 0 ? (
        <EmptyState title="No remembered consents">Applications you approve are remembered here until you withdraw them.</EmptyState>
      ) : (
        <Table
          caption="Consents"
          rows={consents.data}
          rowKey={(c) => `${c.client_id}/${c.endpoint_id}/${c.user_id}`}
          columns={[
            { header: "Application", cell: (c) => <span className="mono">{c.client_id}</span> },
            { header: "Endpoint", cell: (c) => <EndpointName endpoints={endpoints} id={c.endpoint_id} /> },
            { header: "Scopes", cell: (c) => <span className="mono">{c.scopes.join(" ") || "—"}</span> },
            { header: "Granted", cell: (c) => when(c.granted_at) },
            {
              header: "Actions",
              cell: (c) => (
                <ConfirmDialog
                  trigger={
                    <button type="button" className="btn btn-small btn-danger">
                      Withdraw consent
                    </button>
                  }
                  title="Withdraw consent?"
                  description="The application must ask again, and the grants it holds are revoked."
                  confirmLabel="Withdraw"
                  danger
                  onConfirm={async () => {
                    await unwrap(
                      api.POST("/api/v1/orgs/{org}/oauth/consents/revoke", {
                        params: { path: { org } },
                        body: { client_id: c.client_id, endpoint_id: c.endpoint_id },
                      }),
                    );
                    await qc.invalidateQueries({ queryKey: ["org", org, "oauth-consents"] });
                  }}
                />
              ),
            },
          ]}
        />
      )}
    </Section>
  );
}

export default function Tokens() {
  const { slug: org, role } = useCurrentOrg();
  const endpoints = useQuery(endpointsQuery(org));
  const isAdmin = roleAtLeast(role, "admin");
  return (
    <>
      <PageHeader title="Tokens" description="Credentials that call your endpoints, and the access members gave MCP clients." />
      {isAdmin ? (
        <>
          <ServiceTokens org={org} canEdit={isAdmin} endpoints={endpoints.data} />
          <ServiceClients org={org} canEdit={isAdmin} endpoints={endpoints.data} />
          <OAuthGrants org={org} endpoints={endpoints.data} />
        </>
      ) : (
        <p className="muted">Service tokens, service clients and members' grants are managed by admins and owners.</p>
      )}
      <Consents org={org} endpoints={endpoints.data} />
    </>
  );
}
