import { useEffect, useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, unwrap, type Schemas } from "../../api/client";
import { orgsQuery, roleAtLeast, useCurrentOrg, type Org, type Role } from "../../api/org";
import { ConfirmDialog, CopyButton, ErrorState, Field, FormAlert, Loading, Notice, PageHeader, Table, formErrors } from "../../components";
import { useSession } from "../../api/session";
import { UsageMeter } from "./UsageMeter";

export default function OrgSettings() {
  const { org, slug, role } = useCurrentOrg();
  if (!org) return null;
  const admin = roleAtLeast(role, "admin");
  return (
    <>
      <PageHeader title="Org settings" description={admin ? undefined : "Only admins and owners change these settings."} />
      <General org={org} canEdit={admin} />
      <section className="card" aria-labelledby="plan-h">
        <h2 id="plan-h">Plan and usage</h2>
        <UsageMeter slug={slug} />
        <p className="muted">Plans are assigned by the platform operator.</p>
      </section>
      <Logging slug={slug} canEdit={admin} />
      {admin && <Sso slug={slug} />}
      {admin && <SsoDomains slug={slug} />}
      {role === "owner" && <DangerZone org={org} />}
    </>
  );
}

function General({ org, canEdit }: { org: Org; canEdit: boolean }) {
  const [name, setName] = useState(org.name);
  const qc = useQueryClient();
  const save = useMutation({
    mutationFn: () => unwrap(api.PATCH("/api/v1/orgs/{org}", { params: { path: { org: org.slug } }, body: { name } })),
    onSuccess: () => qc.invalidateQueries({ queryKey: orgsQuery.queryKey }),
  });
  const errors = formErrors(save.error, ["name"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    save.mutate();
  }
  return (
    <section className="card" aria-labelledby="general-h">
      <h2 id="general-h">General</h2>
      {save.isSuccess && <Notice>Saved.</Notice>}
      <FormAlert message={errors.form} />
      <form onSubmit={submit} noValidate>
        <Field label="Org name" error={errors.field.name}>
          <input value={name} onChange={(e) => setName(e.target.value)} disabled={!canEdit} />
        </Field>
        <Field label="Slug" hint="The slug cannot be changed: endpoint URLs contain it.">
          <input value={org.slug} readOnly />
        </Field>
        {canEdit && (
          <button type="submit" className="btn btn-primary" disabled={save.isPending || name === org.name}>
            Save
          </button>
        )}
      </form>
    </section>
  );
}

function Logging({ slug, canEdit }: { slug: string; canEdit: boolean }) {
  const qc = useQueryClient();
  const key = ["org", slug, "settings"];
  const settings = useQuery({ queryKey: key, queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/settings", { params: { path: { org: slug } } })) });
  const save = useMutation({
    mutationFn: (log_tool_arguments: boolean) =>
      unwrap(api.PATCH("/api/v1/orgs/{org}/settings", { params: { path: { org: slug } }, body: { log_tool_arguments } })),
    onSuccess: (data) => qc.setQueryData(key, data),
  });
  return (
    <section className="card" aria-labelledby="logging-h">
      <h2 id="logging-h">Audit logging</h2>
      {settings.isPending ? (
        <Loading />
      ) : settings.error ? (
        <ErrorState error={settings.error} retry={() => settings.refetch()} />
      ) : (
        <>
          <FormAlert message={save.error?.message ?? null} />
          <label className="check">
            <input
              type="checkbox"
              checked={settings.data.log_tool_arguments}
              disabled={!canEdit || save.isPending}
              onChange={(e) => save.mutate(e.target.checked)}
            />
            Record tool call arguments in the audit trail
          </label>
        </>
      )}
    </section>
  );
}

const JIT_ROLES: Role[] = ["viewer", "developer", "admin"];

function Sso({ slug }: { slug: string }) {
  const qc = useQueryClient();
  const key = ["org", slug, "sso"];
  const sso = useQuery({
    queryKey: key,
    queryFn: async () => {
      try {
        return await unwrap(api.GET("/api/v1/orgs/{org}/sso", { params: { path: { org: slug } } }));
      } catch (e) {
        // No SSO configured yet.
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      }
    },
  });
  const [issuer, setIssuer] = useState("");
  const [clientId, setClientId] = useState("");
  const [secret, setSecret] = useState("");
  const [domains, setDomains] = useState("");
  const [jitRole, setJitRole] = useState<Role>("developer");
  const [enabled, setEnabled] = useState(true);
  useEffect(() => {
    if (sso.data) {
      setIssuer(sso.data.issuer_url);
      setClientId(sso.data.client_id);
      setDomains(sso.data.allowed_domains.join(", "));
      setJitRole(sso.data.jit_role);
      setEnabled(sso.data.enabled);
    }
  }, [sso.data]);
  const save = useMutation({
    mutationFn: () =>
      unwrap(
        api.PUT("/api/v1/orgs/{org}/sso", {
          params: { path: { org: slug } },
          body: {
            issuer_url: issuer,
            client_id: clientId,
            client_secret: secret || null,
            allowed_domains: domains
              .split(/[\s,]+/)
              .map((d) => d.trim())
              .filter(Boolean),
            jit_role: jitRole,
            enabled,
          },
        }),
      ),
    onSuccess: (data) => {
      setSecret("");
      qc.setQueryData(key, data);
    },
  });
  const enforce = useMutation({
    mutationFn: (enforced: boolean) => unwrap(api.PUT("/api/v1/orgs/{org}/sso/enforcement", { params: { path: { org: slug } }, body: { enforced } })),
    onSuccess: () => qc.invalidateQueries({ queryKey: key }),
  });
  const errors = formErrors(save.error, ["issuer_url", "client_id", "client_secret", "allowed_domains", "jit_role"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    save.mutate();
  }
  return (
    <section className="card" aria-labelledby="sso-h">
      <h2 id="sso-h">Single sign-on (OpenID Connect)</h2>
      {sso.isPending ? (
        <Loading />
      ) : sso.error ? (
        <ErrorState error={sso.error} retry={() => sso.refetch()} />
      ) : (
        <>
          {sso.data && (
            <dl className="details">
              <dt>Redirect URI</dt>
              <dd>
                <code>{sso.data.redirect_uri}</code>
              </dd>
              <dt>Login URL</dt>
              <dd>
                <code>{sso.data.login_url}</code>
              </dd>
              <dt>Enforced</dt>
              <dd>{sso.data.enforced ? `yes, since ${new Date(sso.data.enforced_since ?? "").toLocaleString()}` : "no"}</dd>
            </dl>
          )}
          {save.isSuccess && <Notice>SSO settings saved.</Notice>}
          <FormAlert message={errors.form} />
          <form onSubmit={submit} noValidate>
            <Field label="Issuer URL" error={errors.field.issuer_url}>
              <input type="url" value={issuer} onChange={(e) => setIssuer(e.target.value)} placeholder="https://login.example.com" />
            </Field>
            <Field label="Client ID" error={errors.field.client_id}>
              <input value={clientId} onChange={(e) => setClientId(e.target.value)} autoComplete="off" />
            </Field>
            <Field
              label="Client secret"
              hint={sso.data?.client_secret_set ? "A secret is stored (never shown). Leave empty to keep it." : "Write-only: it is never shown again."}
              error={errors.field.client_secret}
            >
              <input type="password" value={secret} onChange={(e) => setSecret(e.target.value)} autoComplete="new-password" />
            </Field>
            <Field
              label="Allowed email domains"
              hint="Comma-separated. Verified addresses of these domains join on their first SSO login: at once for a domain the org verified (below), after a mailed confirmation otherwise."
              error={errors.field.allowed_domains}
            >
              <input value={domains} onChange={(e) => setDomains(e.target.value)} />
            </Field>
            <Field label="Role of new members joining through SSO" error={errors.field.jit_role}>
              <select value={jitRole} onChange={(e) => setJitRole(e.target.value as Role)}>
                {JIT_ROLES.map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </select>
            </Field>
            <label className="check">
              <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Enabled
            </label>
            <div className="form-actions">
              <button type="submit" className="btn btn-primary" disabled={save.isPending}>
                Save SSO settings
              </button>
              {sso.data && (
                <button type="button" className="btn" disabled={enforce.isPending} onClick={() => enforce.mutate(!sso.data!.enforced)}>
                  {sso.data.enforced ? "Stop enforcing SSO" : "Enforce SSO for all members"}
                </button>
              )}
              {sso.data && !sso.data.enforced && (
                <ConfirmDialog
                  trigger={
                    <button type="button" className="btn">
                      Remove SSO
                    </button>
                  }
                  title="Remove SSO?"
                  description="Members sign in with their passwords again."
                  confirmLabel="Remove"
                  danger
                  onConfirm={async () => {
                    await unwrap(api.DELETE("/api/v1/orgs/{org}/sso", { params: { path: { org: slug } } }));
                    qc.setQueryData(key, null);
                  }}
                />
              )}
            </div>
            <FormAlert message={enforce.error?.message ?? null} />
          </form>
        </>
      )}
    </section>
  );
}

type Domain = Schemas["DomainOut"];

/**
 * The email domains the org proves it controls through a DNS TXT record, so that its SSO lets
 * their addresses join at once (without the mailed confirmation).
 */
function SsoDomains({ slug }: { slug: string }) {
  const qc = useQueryClient();
  const key = ["org", slug, "sso-domains"];
  const path = { params: { path: { org: slug } } };
  const domains = useQuery({ queryKey: key, queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/sso/domains", path)) });
  const [domain, setDomain] = useState("");
  const [checked, setChecked] = useState<Record<string, Domain["check"]>>({});
  const add = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/orgs/{org}/sso/domains", { ...path, body: { domain } })),
    onSuccess: () => {
      setDomain("");
      return qc.invalidateQueries({ queryKey: key });
    },
  });
  const check = useMutation({
    mutationFn: (d: string) => unwrap(api.POST("/api/v1/orgs/{org}/sso/domains/{domain}/verify", { params: { path: { org: slug, domain: d } } })),
    onSuccess: (out) => {
      setChecked((old) => ({ ...old, [out.domain]: out.check }));
      return qc.invalidateQueries({ queryKey: key });
    },
  });
  const errors = formErrors(add.error, ["domain"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    add.mutate();
  }
  return (
    <section className="card" aria-labelledby="sso-domains-h">
      <h2 id="sso-domains-h">SSO email domains</h2>
      <p className="muted">
        Publish the TXT record shown for a domain, then check it. Addresses of a verified domain that the SSO settings allow join at once;
        others confirm by mail first.
      </p>
      <FormAlert message={errors.form} />
      <form className="inline-form" onSubmit={submit} noValidate aria-label="Add an email domain">
        <Field label="Domain" error={errors.field.domain}>
          <input value={domain} onChange={(e) => setDomain(e.target.value)} placeholder="example.com" autoComplete="off" />
        </Field>
        <button type="submit" className="btn" disabled={add.isPending || domain.trim() === ""}>
          Add domain
        </button>
      </form>
      <FormAlert message={formErrors(check.error, []).form} />
      {domains.isPending ? (
        <Loading />
      ) : domains.error ? (
        <ErrorState error={domains.error} retry={() => domains.refetch()} />
      ) : domains.data.length === 0 ? (
        <p className="muted">No domains yet.</p>
      ) : (
        <Table
          caption="SSO email domains"
          rows={domains.data}
          rowKey={(d) => d.domain}
          columns={[
            { header: "Domain", cell: (d) => <span className="mono">{d.domain}</span> },
            {
              header: "Status",
              cell: (d) => (
                <>
                  <span className={d.verified ? "badge badge-ok" : "badge"}>{d.verified ? "verified" : "not verified"}</span>
                  {checked[d.domain] && <div className="muted">{checked[d.domain]!.detail}</div>}
                </>
              ),
            },
            {
              header: "TXT record",
              cell: (d) => (
                <>
                  <div className="mono">{d.txt_name}</div>
                  <div className="mono">
                    {d.txt_value} <CopyButton text={d.txt_value} />
                  </div>
                </>
              ),
            },
            {
              header: "Actions",
              cell: (d) => (
                <div className="form-actions">
                  <button
                    type="button"
                    className="btn"
                    aria-label={`Check DNS for ${d.domain}`}
                    disabled={check.isPending}
                    onClick={() => check.mutate(d.domain)}
                  >
                    Check DNS
                  </button>
                  <ConfirmDialog
                    trigger={
                      <button type="button" className="btn" aria-label={`Remove ${d.domain}`}>
                        Remove
                      </button>
                    }
                    title={`Remove ${d.domain}?`}
                    description="Addresses of this domain confirm by mail again before they join through SSO."
                    confirmLabel="Remove"
                    danger
                    onConfirm={async () => {
                      await unwrap(api.DELETE("/api/v1/orgs/{org}/sso/domains/{domain}", { params: { path: { org: slug, domain: d.domain } } }));
                      await qc.invalidateQueries({ queryKey: key });
                    }}
                  />
                </div>
              ),
            },
          ]}
        />
      )}
    </section>
  );
}

function DangerZone({ org }: { org: Org }) {
  const qc = useQueryClient();
  const navigate = useNavigate();
  const members = useQuery({
    queryKey: ["org", org.slug, "members"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/members", { params: { path: { org: org.slug } } })),
  });
  const [to, setTo] = useState("");
  const { session } = useSession();
  const others = members.data?.filter((m) => m.user_id !== session?.user.id) ?? [];
  return (
    <section className="card card-danger" aria-labelledby="danger-h">
      <h2 id="danger-h">Danger zone</h2>
      <h3>Transfer ownership</h3>
      <p className="muted">The member you choose becomes an owner; you become an admin.</p>
      {members.isPending ? (
        <Loading />
      ) : members.error ? (
        <ErrorState error={members.error} retry={() => members.refetch()} />
      ) : (
        <div className="inline-form">
          <Field label="New owner">
            <select value={to} onChange={(e) => setTo(e.target.value)}>
              <option value="">Choose a member…</option>
              {others.map((m) => (
                <option key={m.user_id} value={m.user_id}>
                  {m.email} ({m.role})
                </option>
              ))}
            </select>
          </Field>
          <ConfirmDialog
            trigger={
              <button type="button" className="btn btn-danger" disabled={!to}>
                Transfer ownership
              </button>
            }
            title="Transfer ownership?"
            description={`You will no longer own ${org.name}.`}
            confirmLabel="Transfer"
            danger
            typeToConfirm={org.slug}
            onConfirm={async () => {
              await unwrap(api.POST("/api/v1/orgs/{org}/transfer-ownership", { params: { path: { org: org.slug } }, body: { user_id: to } }));
              await qc.invalidateQueries({ queryKey: orgsQuery.queryKey });
              await qc.invalidateQueries({ queryKey: ["org", org.slug] });
              navigate(`/orgs/${org.slug}/members`);
            }}
          />
        </div>
      )}
      <DeleteOrg org={org} />
    </section>
  );
}

/**
 * Deleting the org: the owner types its slug. The org's audit trail goes with it, so the dialog
 * offers its export first. Afterwards the console home opens another of the user's orgs, or the
 * create-org page when none is left.
 */
function DeleteOrg({ org }: { org: Org }) {
  const qc = useQueryClient();
  const navigate = useNavigate();
  return (
    <>
      <h3>Delete this org</h3>
      <p className="muted">
        Deletes {org.name} with its servers, endpoints, scopes, tokens, members, usage, invoices and audit trail. Its endpoints stop
        answering at once and its tokens stop working. This cannot be undone.
      </p>
      <ConfirmDialog
        trigger={
          <button type="button" className="btn btn-danger">
            Delete organization
          </button>
        }
        title={`Delete ${org.name}?`}
        description={
          <>
            <p>Everything the org owns is deleted, its audit trail included; the platform operator keeps a record of the deletion.</p>
            <p>
              <a href={`/api/v1/orgs/${encodeURIComponent(org.slug)}/audit/export`} download>
                Export the audit trail (JSON Lines)
              </a>{" "}
              first to keep it.
            </p>
          </>
        }
        confirmLabel="Delete organization"
        danger
        typeToConfirm={org.slug}
        onConfirm={async () => {
          await unwrap(api.DELETE("/api/v1/orgs/{org}", { params: { path: { org: org.slug } }, body: { confirm: org.slug } }));
          const remaining = (qc.getQueryData<Org[]>(orgsQuery.queryKey) ?? []).filter((o) => o.slug !== org.slug);
          qc.setQueryData(orgsQuery.queryKey, remaining);
          qc.removeQueries({ queryKey: ["org", org.slug] });
          localStorage.removeItem("gatehouse.org");
          // The console home picks the org to open next (or the create-org page).
          navigate("/", { replace: true });
          void qc.invalidateQueries({ queryKey: orgsQuery.queryKey });
        }}
      />
    </>
  );
}
