// The SQL tool editor: define or change a tool on a backend (the API validates it with the parser
// and on the backend, and its problems are shown at the field at fault), then see the MCP
// definition it learned from the backend's types, re-run the inspection, and approve it through
// the publication gate.
import { useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { ConfirmDialog, ErrorState, Field, FormAlert, Loading, Notice, PageHeader, formErrors } from "../../components";
import { Section, StatusBadge, when } from "../servers/common";
import { backendQuery, referenceTablesQuery } from "./BackendDetail";
import { InspectionReport, asInspection } from "./inspection";
import "./backends.css";

type SqlTool = Schemas["SqlToolOut"];
type Access = Schemas["AccessIo"];

const FIELDS = ["name", "description", "access", "destructive", "sql", "parameter_descriptions"] as const;

interface Draft {
  name: string;
  description: string;
  access: Access;
  destructive: boolean;
  sql: string;
  /** One `name: description` per line. */
  params: string;
}

const EMPTY: Draft = { name: "", description: "", access: "read", destructive: false, sql: "", params: "" };

function draftOf(tool: SqlTool): Draft {
  const def = tool.definition as { description?: string; inputSchema?: { properties?: Record<string, { description?: string }> } };
  const props = def.inputSchema?.properties ?? {};
  return {
    name: tool.name,
    description: def.description ?? "",
    access: tool.access,
    destructive: tool.destructive,
    sql: tool.sql,
    params: Object.entries(props)
      .filter(([, p]) => p.description)
      .map(([n, p]) => `${n}: ${p.description}`)
      .join("\n"),
  };
}

/** `name: description` lines as the API's map. */
export function parseParamDescriptions(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf(":");
    if (at <= 0) continue;
    const name = line.slice(0, at).trim();
    const description = line.slice(at + 1).trim();
    if (name && description) out[name] = description;
  }
  return out;
}

function ToolForm({
  initial,
  submitLabel,
  onSave,
}: {
  initial: Draft;
  submitLabel: string;
  onSave: (d: Draft) => Promise<unknown>;
}) {
  const [d, setD] = useState<Draft>(initial);
  const save = useMutation({ mutationFn: () => onSave(d) });
  const errors = formErrors(save.error, FIELDS);
  const set = (patch: Partial<Draft>) => setD((x) => ({ ...x, ...patch }));
  function submit(e: FormEvent) {
    e.preventDefault();
    save.mutate();
  }
  return (
    <form onSubmit={submit} noValidate aria-label="SQL tool">
      <FormAlert message={errors.form} />
      <div className="grid">
        <Field label="Name" hint="A lower-case identifier, e.g. my_orders." error={errors.field.name}>
          <input value={d.name} onChange={(e) => set({ name: e.target.value })} autoComplete="off" spellCheck={false} />
        </Field>
        <Field label="Access" error={errors.field.access}>
          <select value={d.access} onChange={(e) => set({ access: e.target.value as Access, destructive: e.target.value === "write" && d.destructive })}>
            <option value="read">Read: runs in a read-only transaction</option>
            <option value="write">Write: may insert, update or delete</option>
          </select>
        </Field>
      </div>
      <Field label="Description" hint="What the tool does, for the model and its users." error={errors.field.description}>
        <textarea rows={2} value={d.description} onChange={(e) => set({ description: e.target.value })} />
      </Field>
      <Field
        label="SQL statement"
        hint="One SELECT, INSERT, UPDATE or DELETE; parameters are :name. Row-level security on the backend decides which rows a caller sees."
        error={errors.field.sql}
      >
        <textarea rows={6} className="mono" value={d.sql} onChange={(e) => set({ sql: e.target.value })} spellCheck={false} />
      </Field>
      <Field label="Parameter descriptions" hint="One per line: name: description." error={errors.field.parameter_descriptions}>
        <textarea rows={3} className="mono" value={d.params} onChange={(e) => set({ params: e.target.value })} spellCheck={false} />
      </Field>
      <label className="check">
        <input type="checkbox" checked={d.destructive} disabled={d.access !== "write"} onChange={(e) => set({ destructive: e.target.checked })} />
        Destructive: a call runs only after the caller confirms it (write tools only)
      </label>
      {errors.field.destructive && (
        <p className="field-error" role="alert">
          {errors.field.destructive}
        </p>
      )}
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={save.isPending}>
          {save.isPending ? "Validating on the backend…" : submitLabel}
        </button>
      </div>
    </form>
  );
}

function Schema({ title, value }: { title: string; value: unknown }) {
  return (
    <div>
      <h3 className="section-title">{title}</h3>
      <pre className="code" tabIndex={0} aria-label={title}>
        {value === undefined ? "none" : JSON.stringify(value, null, 2)}
      </pre>
    </div>
  );
}

function Publication({ org, backendId, tool, canApprove }: { org: string; backendId: string; tool: SqlTool; canApprove: boolean }) {
  const qc = useQueryClient();
  const inspect = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST("/api/v1/orgs/{org}/backends/{backend_id}/tools/{tool_id}/inspect", {
          params: { path: { org, backend_id: backendId, tool_id: tool.id } },
        }),
      ),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["org", org, "backends", backendId] }),
  });
  const approve = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST("/api/v1/orgs/{org}/tools/{tool_id}/approve", {
          params: { path: { org, tool_id: tool.id } },
          body: { definition_hash: tool.definition_hash },
        }),
      ),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["org", org] }),
  });
  const error = formErrors(inspect.error ?? approve.error, []).form;
  const blocking = inspect.data?.blocking;
  return (
    <div>
      <p>
        Status <StatusBadge status={tool.status} /> <span className="muted">updated {when(tool.updated_at)}</span>
      </p>
      <p className="muted">
        Approving runs the publication gate: the tool is validated on the backend again, and every relation it touches must be protected by
        row-level security (or marked as reference data) with a tool role that cannot bypass it.
      </p>
      <FormAlert message={error} />
      {approve.isSuccess && <Notice>Approved: the tool is published to endpoints that include this backend.</Notice>}
      {blocking &&
        (blocking.length === 0 ? (
          <Notice>Inspected now: nothing blocks publication.</Notice>
        ) : (
          <div className="alert alert-error" role="alert">
            Inspected now: publication is blocked.
            <ul>
              {blocking.map((b) => (
                <li key={b}>{b}</li>
              ))}
            </ul>
          </div>
        ))}
      <div className="form-actions">
        <button type="button" className="btn" onClick={() => inspect.mutate()} disabled={inspect.isPending}>
          {inspect.isPending ? "Inspecting…" : "Inspect again"}
        </button>
        {canApprove && (
          <button
            type="button"
            className="btn btn-primary"
            onClick={() => approve.mutate()}
            disabled={approve.isPending || tool.status === "approved"}
          >
            Approve and publish
          </button>
        )}
      </div>
    </div>
  );
}

function body(d: Draft) {
  return {
    name: d.name,
    description: d.description,
    access: d.access,
    destructive: d.access === "write" && d.destructive,
    sql: d.sql,
    // The API takes a JSON object of strings; the generated type of a free-form object is narrower.
    parameter_descriptions: parseParamDescriptions(d.params) as unknown as Schemas["SqlToolIn"]["parameter_descriptions"],
  };
}

export function NewSqlTool() {
  const { slug: org } = useCurrentOrg();
  const { backendId = "" } = useParams();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const backend = useQuery(backendQuery(org, backendId));
  if (backend.isPending) return <Loading />;
  if (backend.error) return <ErrorState error={backend.error} retry={() => backend.refetch()} />;
  return (
    <>
      <p>
        <Link to="../.." relative="path">← {backend.data.name}</Link>
      </p>
      <PageHeader title="New SQL tool" description={`On ${backend.data.name}; exposed as ${backend.data.slug}__<name>.`} />
      <Section title="Definition">
        <ToolForm
          initial={EMPTY}
          submitLabel="Validate and save"
          onSave={async (d) => {
            const tool = await unwrap(
              api.POST("/api/v1/orgs/{org}/backends/{backend_id}/tools", { params: { path: { org, backend_id: backendId } }, body: body(d) }),
            );
            await qc.invalidateQueries({ queryKey: ["org", org] });
            navigate(`../${tool.id}`, { relative: "path" });
          }}
        />
      </Section>
    </>
  );
}

export default function SqlToolPage() {
  const { slug: org, role } = useCurrentOrg();
  const { backendId = "", toolId = "" } = useParams();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const [editing, setEditing] = useState(false);
  const [saved, setSaved] = useState(false);
  const tool = useQuery({
    queryKey: ["org", org, "backends", backendId, "tools", toolId],
    queryFn: () =>
      unwrap(
        api.GET("/api/v1/orgs/{org}/backends/{backend_id}/tools/{tool_id}", { params: { path: { org, backend_id: backendId, tool_id: toolId } } }),
      ),
  });
  const reference = useQuery(referenceTablesQuery(org, backendId));
  const remove = useMutation({
    mutationFn: () =>
      unwrap(
        api.DELETE("/api/v1/orgs/{org}/backends/{backend_id}/tools/{tool_id}", { params: { path: { org, backend_id: backendId, tool_id: toolId } } }),
      ),
    onSuccess: async () => {
      await qc.invalidateQueries({ queryKey: ["org", org] });
      navigate("../..", { relative: "path" });
    },
  });
  const isDeveloper = roleAtLeast(role, "developer");
  const isAdmin = roleAtLeast(role, "admin");
  if (tool.isPending) return <Loading />;
  if (tool.error) return <ErrorState error={tool.error} retry={() => tool.refetch()} />;
  const t = tool.data;
  const def = t.definition as { inputSchema?: unknown; outputSchema?: unknown; annotations?: unknown };
  const inspection = asInspection(t.inspection);
  return (
    <>
      <p>
        <Link to="../.." relative="path">← Backend</Link>
      </p>
      <PageHeader
        title={t.name}
        description={`Exposed as ${t.exposed_name}.`}
        actions={
          isDeveloper ? (
            <>
              {!editing && (
                <button type="button" className="btn" onClick={() => (setEditing(true), setSaved(false))}>
                  Edit
                </button>
              )}
              <ConfirmDialog
                trigger={
                  <button type="button" className="btn">
                    Delete tool
                  </button>
                }
                title={`Delete ${t.name}?`}
                description="It disappears from every endpoint that includes this backend."
                confirmLabel="Delete"
                danger
                onConfirm={() => remove.mutateAsync()}
              />
            </>
          ) : undefined
        }
      />
      {saved && <Notice>Saved. A changed definition waits for approval again.</Notice>}
      {editing ? (
        <Section
          title="Edit"
          actions={
            <button type="button" className="btn" onClick={() => setEditing(false)}>
              Cancel
            </button>
          }
        >
          <ToolForm
            initial={draftOf(t)}
            submitLabel="Validate and save"
            onSave={async (d) => {
              await unwrap(
                api.PATCH("/api/v1/orgs/{org}/backends/{backend_id}/tools/{tool_id}", {
                  params: { path: { org, backend_id: backendId, tool_id: toolId } },
                  body: body(d),
                }),
              );
              await qc.invalidateQueries({ queryKey: ["org", org] });
              setEditing(false);
              setSaved(true);
            }}
          />
        </Section>
      ) : (
        <Section title="Statement">
          <p>
            <span className="badge">{t.access}</span> {t.destructive && <span className="badge badge-warn">destructive</span>}
          </p>
          <pre className="code" tabIndex={0} aria-label="SQL statement">
            {t.sql}
          </pre>
        </Section>
      )}
      <Section title="Publication">
        <Publication org={org} backendId={backendId} tool={t} canApprove={isAdmin} />
      </Section>
      <Section title="Learned schemas">
        <p className="muted">Made from the types the backend described for the parameters and result columns.</p>
        <div className="schema-pair">
          <Schema title="Input schema" value={def.inputSchema} />
          <Schema title="Output schema" value={def.outputSchema} />
        </div>
      </Section>
      <Section title="Inspection">
        {!inspection ? (
          <p className="muted">Not inspected yet.</p>
        ) : reference.isPending ? (
          <Loading />
        ) : reference.error ? (
          <ErrorState error={reference.error} retry={() => reference.refetch()} />
        ) : (
          <InspectionReport org={org} backendId={backendId} inspection={inspection} reference={reference.data} canEdit={isAdmin} />
        )}
      </Section>
    </>
  );
}
