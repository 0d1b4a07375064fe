// Endpoints: the governed MCP URLs of the org, and creating one over chosen servers.
import { useState, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { CopyButton, EmptyState, ErrorState, Field, FormAlert, Loading, PageHeader, Table, formErrors } from "../../components";
import { Section } from "../servers/common";
import { serversQuery } from "../servers/Servers";

export function endpointsQuery(org: string) {
  return {
    queryKey: ["org", org, "endpoints"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/endpoints", { params: { path: { org } } })),
  };
}

function CreateEndpoint({ org }: { org: string }) {
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [description, setDescription] = useState("");
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const servers = useQuery(serversQuery(org));
  const qc = useQueryClient();
  const navigate = useNavigate();
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST("/api/v1/orgs/{org}/endpoints", {
          params: { path: { org } },
          body: { name, slug, description, servers: [...chosen].map((server_id) => ({ server_id })) },
        }),
      ),
    onSuccess: async (e) => {
      await qc.invalidateQueries({ queryKey: ["org", org, "endpoints"] });
      navigate(e.id);
    },
  });
  const errors = formErrors(create.error, ["name", "slug", "description", "servers"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate();
  }
  return (
    <form onSubmit={submit} noValidate aria-label="Create an endpoint">
      <FormAlert message={errors.form} />
      <div className="grid">
        <Field label="Name" error={errors.field.name}>
          <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Slug" hint="The URL path segment; cannot change." error={errors.field.slug}>
          <input value={slug} onChange={(e) => setSlug(e.target.value)} autoComplete="off" spellCheck={false} />
        </Field>
      </div>
      <Field label="Description" error={errors.field.description}>
        <input value={description} onChange={(e) => setDescription(e.target.value)} autoComplete="off" />
      </Field>
      <fieldset style={{ border: "none", padding: 0, margin: "0 0 14px" }}>
        <legend>Servers (all their approved tools)</legend>
        {servers.isPending ? (
          <Loading />
        ) : servers.error ? (
          <ErrorState error={servers.error} retry={() => servers.refetch()} />
        ) : servers.data.length === 0 ? (
          <p className="muted">
            No servers yet: <Link to={`/orgs/${org}/servers`}>register one</Link> first.
          </p>
        ) : (
          servers.data.map((s) => (
            <label className="check" key={s.id}>
              <input
                type="checkbox"
                checked={chosen.has(s.id)}
                onChange={(e) => {
                  const next = new Set(chosen);
                  if (e.target.checked) next.add(s.id);
                  else next.delete(s.id);
                  setChosen(next);
                }}
              />
              {s.name} <span className="mono muted">{s.slug}</span>
            </label>
          ))
        )}
        {errors.field.servers && (
          <p className="field-error" role="alert">
            {errors.field.servers}
          </p>
        )}
      </fieldset>
      <button type="submit" className="btn btn-primary" disabled={create.isPending}>
        Create endpoint
      </button>
    </form>
  );
}

export default function Endpoints() {
  const { slug: org, role } = useCurrentOrg();
  const endpoints = useQuery(endpointsQuery(org));
  const [creating, setCreating] = useState(false);
  const canEdit = roleAtLeast(role, "admin");
  return (
    <>
      <PageHeader
        title="Endpoints"
        description="Each endpoint is one governed MCP URL combining servers; callers see only what their scopes grant."
        actions={
          canEdit && !creating ? (
            <button type="button" className="btn btn-primary" onClick={() => setCreating(true)}>
              Create an endpoint
            </button>
          ) : undefined
        }
      />
      {creating && (
        <Section
          title="Create an endpoint"
          actions={
            <button type="button" className="btn" onClick={() => setCreating(false)}>
              Cancel
            </button>
          }
        >
          <CreateEndpoint org={org} />
        </Section>
      )}
      {endpoints.isPending ? (
        <Loading />
      ) : endpoints.error ? (
        <ErrorState error={endpoints.error} retry={() => endpoints.refetch()} />
      ) : endpoints.data.length === 0 ? (
        <EmptyState title="No endpoints yet">Create an endpoint to give MCP clients one URL for your servers.</EmptyState>
      ) : (
        <Table
          caption="Endpoints"
          rows={endpoints.data}
          rowKey={(e) => e.id}
          columns={[
            { header: "Name", cell: (e) => <Link to={e.id}>{e.name}</Link> },
            {
              header: "URL",
              cell: (e) => (
                <span className="row-actions">
                  <span className="mono">{e.url}</span> <CopyButton text={e.url} label="Copy URL" />
                </span>
              ),
            },
            { header: "Servers", numeric: true, cell: (e) => e.servers.length },
            { header: "Tools", numeric: true, cell: (e) => e.tools.length },
          ]}
        />
      )}
    </>
  );
}
