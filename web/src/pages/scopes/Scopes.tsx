// Scopes and the scope × tool grant matrix: which tools each scope grants, edited in place and
// saved as one complete set per changed scope.
import { useMemo, useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { roleAtLeast, useCurrentOrg, type Role } from "../../api/org";
import { ConfirmDialog, EmptyState, ErrorState, Field, FormAlert, Loading, Notice, PageHeader, formErrors } from "../../components";
import { Section, StatusBadge } from "../servers/common";
import {
  changes,
  columnState,
  grantEffective,
  grantsOf,
  isGranted,
  setColumn,
  toggle,
  visibleTools,
  type Grants,
} from "../../lib/grantMatrix";

type Scope = Schemas["ScopeOut"];
const ROLES: Role[] = ["viewer", "developer", "admin", "owner"];

export function scopesQuery(org: string) {
  return {
    queryKey: ["org", org, "scopes"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/scopes", { params: { path: { org } } })),
  };
}

export function toolsQuery(org: string) {
  return {
    queryKey: ["org", org, "tools"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/tools", { params: { path: { org } } })),
  };
}

function CreateScope({ org }: { org: string }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [minRole, setMinRole] = useState<Role>("viewer");
  const qc = useQueryClient();
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST("/api/v1/orgs/{org}/scopes", {
          params: { path: { org } },
          body: { name, description, min_role: minRole, tool_ids: [] },
        }),
      ),
    onSuccess: async () => {
      setName("");
      setDescription("");
      await qc.invalidateQueries({ queryKey: ["org", org, "scopes"] });
    },
  });
  const errors = formErrors(create.error, ["name", "description", "min_role"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    create.mutate();
  }
  return (
    <form className="stack" onSubmit={submit} noValidate aria-label="Define a scope">
      <FormAlert message={errors.form} />
      <div className="inline-form">
        <Field label="Scope name" hint="e.g. orders:read; cannot change (tokens carry it)." error={errors.field.name}>
          <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" spellCheck={false} />
        </Field>
        <Field label="Description" error={errors.field.description}>
          <input value={description} onChange={(e) => setDescription(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Lowest role that may hold it" error={errors.field.min_role}>
          <select value={minRole} onChange={(e) => setMinRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </Field>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          Define scope
        </button>
      </div>
    </form>
  );
}

function Matrix({ org, scopes, tools, canEdit }: { org: string; scopes: Scope[]; tools: Schemas["ToolOut"][]; canEdit: boolean }) {
  const original = useMemo(() => grantsOf(scopes), [scopes]);
  const [edited, setEdited] = useState<Grants>(original);
  const [savedCount, setSavedCount] = useState<number | null>(null);
  // New data from the server replaces unsaved edits only when there are none.
  const [base, setBase] = useState(original);
  if (base !== original) {
    setBase(original);
    setEdited(original);
  }
  const rows = visibleTools(tools, edited);
  const rowIds = rows.map((t) => t.id);
  const pending = changes(scopes, original, edited);
  const qc = useQueryClient();
  const save = useMutation({
    mutationFn: async () => {
      for (const c of pending) {
        await unwrap(
          api.PUT("/api/v1/orgs/{org}/scopes/{scope_id}/tools", {
            params: { path: { org, scope_id: c.scopeId } },
            body: { tool_ids: c.toolIds },
          }),
        );
      }
      return pending.length;
    },
    onSuccess: async (n) => {
      setSavedCount(n);
      await qc.invalidateQueries({ queryKey: ["org", org, "scopes"] });
    },
  });
  if (rows.length === 0) {
    return <EmptyState title="No tools yet">Register a server and approve its tools to grant them through scopes.</EmptyState>;
  }
  const dirtyTools = new Set(pending.flatMap((c) => [...c.added, ...c.removed]));
  return (
    <div className="stack">
      <FormAlert message={formErrors(save.error, []).form} />
      {savedCount !== null && pending.length === 0 && <Notice>Saved {savedCount} scope(s).</Notice>}
      <div className="table-wrap" role="region" aria-label="Grant matrix" tabIndex={0}>
        <table className="matrix">
          <caption className="sr-only">Which tools each scope grants</caption>
          <thead>
            <tr>
              <th scope="col">Tool</th>
              {scopes.map((s) => {
                const state = columnState(edited, s.id, rowIds);
                return (
                  <th scope="col" key={s.id} className="scope">
                    <span className="mono">{s.name}</span>
                    {canEdit && (
                      <div>
                        <input
                          type="checkbox"
                          aria-label={`Grant every tool through ${s.name}`}
                          checked={state === "all"}
                          ref={(el) => {
                            if (el) el.indeterminate = state === "some";
                          }}
                          onChange={(e) => setEdited(setColumn(edited, s.id, rowIds, e.target.checked))}
                        />
                      </div>
                    )}
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody>
            {rows.map((t) => (
              <tr key={t.id} className={dirtyTools.has(t.id) ? "dirty" : undefined}>
                <th scope="row" className="tool">
                  <span className="mono">{t.exposed_name}</span> <StatusBadge status={t.status} />
                  {!grantEffective(t) && <div className="muted">Grants take effect once approved.</div>}
                </th>
                {scopes.map((s) => (
                  <td key={s.id} className="cell">
                    <input
                      type="checkbox"
                      aria-label={`${s.name} grants ${t.exposed_name}`}
                      checked={isGranted(edited, s.id, t.id)}
                      disabled={!canEdit}
                      onChange={() => setEdited(toggle(edited, s.id, t.id))}
                    />
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {canEdit && (
        <div className="form-actions">
          <button type="button" className="btn btn-primary" disabled={pending.length === 0 || save.isPending} onClick={() => save.mutate()}>
            {save.isPending ? "Saving…" : `Save grants${pending.length ? ` (${pending.length} scope${pending.length === 1 ? "" : "s"})` : ""}`}
          </button>
          <button type="button" className="btn" disabled={pending.length === 0} onClick={() => setEdited(original)}>
            Discard changes
          </button>
        </div>
      )}
    </div>
  );
}

export default function Scopes() {
  const { slug: org, role } = useCurrentOrg();
  const canEdit = roleAtLeast(role, "admin");
  const scopes = useQuery(scopesQuery(org));
  const tools = useQuery(toolsQuery(org));
  const qc = useQueryClient();
  const changeRole = useMutation({
    mutationFn: ({ id, minRole }: { id: string; minRole: Role }) =>
      unwrap(api.PATCH("/api/v1/orgs/{org}/scopes/{scope_id}", { params: { path: { org, scope_id: id } }, body: { min_role: minRole } })),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["org", org, "scopes"] }),
  });
  return (
    <>
      <PageHeader title="Scopes" description="Scopes grant tools. Tokens carry scopes; a member may hold a scope from its lowest role up." />
      {canEdit && (
        <Section title="Define a scope">
          <CreateScope org={org} />
        </Section>
      )}
      {scopes.isPending || tools.isPending ? (
        <Loading />
      ) : scopes.error || tools.error ? (
        <ErrorState
          error={scopes.error ?? tools.error}
          retry={() => {
            scopes.refetch();
            tools.refetch();
          }}
        />
      ) : scopes.data.length === 0 ? (
        <EmptyState title="No scopes yet">Define a scope, then choose the tools it grants.</EmptyState>
      ) : (
        <>
          <Section title="Grant matrix">
            <Matrix org={org} scopes={scopes.data} tools={tools.data} canEdit={canEdit} />
          </Section>
          <Section title="All scopes">
            <FormAlert message={formErrors(changeRole.error, []).form} />
            <div className="table-wrap" role="region" aria-label="Scopes" tabIndex={0}>
              <table>
                <thead>
                  <tr>
                    <th scope="col">Scope</th>
                    <th scope="col">Description</th>
                    <th scope="col">Lowest role</th>
                    <th scope="col" className="num">
                      Tools
                    </th>
                    <th scope="col">
                      Actions
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {scopes.data.map((s) => (
                    <tr key={s.id}>
                      <td className="mono">{s.name}</td>
                      <td>{s.description || <span className="muted">—</span>}</td>
                      <td>
                        {canEdit ? (
                          <select
                            aria-label={`Lowest role for ${s.name}`}
                            value={s.min_role}
                            onChange={(e) => changeRole.mutate({ id: s.id, minRole: e.target.value as Role })}
                          >
                            {ROLES.map((r) => (
                              <option key={r} value={r}>
                                {r}
                              </option>
                            ))}
                          </select>
                        ) : (
                          s.min_role
                        )}
                      </td>
                      <td className="num">{s.tool_ids.length}</td>
                      <td>
                        {canEdit && (
                          <ConfirmDialog
                            trigger={
                              <button type="button" className="btn btn-small btn-danger">
                                Delete {s.name}
                              </button>
                            }
                            title={`Delete ${s.name}?`}
                            description="Tokens carrying it no longer grant anything through it."
                            confirmLabel="Delete scope"
                            danger
                            onConfirm={async () => {
                              await unwrap(api.DELETE("/api/v1/orgs/{org}/scopes/{scope_id}", { params: { path: { org, scope_id: s.id } } }));
                              await qc.invalidateQueries({ queryKey: ["org", org, "scopes"] });
                            }}
                          />
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </Section>
        </>
      )}
    </>
  );
}
