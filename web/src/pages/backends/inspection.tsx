// The inspection report of a SQL tool: the tool role and each relation the statement touches,
// with its row-level security, and marking a relation as tenant-neutral reference data.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { ConfirmDialog, Table } from "../../components";

export interface TableReport {
  schema: string;
  name: string;
  kind: string;
  rls_enabled: boolean;
  rls_forced: boolean;
  policies: number;
  role_is_owner: boolean;
  security_invoker: boolean;
  protected: boolean;
  problems: string[];
}

export interface RoleReport {
  name: string;
  superuser: boolean;
  bypassrls: boolean;
  bypass_via: string[];
}

export interface Inspection {
  role: RoleReport;
  tables: TableReport[];
}

/** The inspection the API returned (a JSON object), or null when it has none of the expected shape. */
export function asInspection(value: unknown): Inspection | null {
  const v = value as Partial<Inspection> | null | undefined;
  if (!v || typeof v !== "object" || !v.role || !Array.isArray(v.tables)) return null;
  return v as Inspection;
}

export function roleCanBypass(role: RoleReport): boolean {
  return role.superuser || role.bypassrls || role.bypass_via.length > 0;
}

export function referenceKey(t: { schema: string; name?: string; table?: string }): string {
  return `${t.schema}.${t.name ?? t.table}`;
}

function YesNo({ value, good }: { value: boolean; good: boolean }) {
  return <span className={value === good ? "badge badge-ok" : "badge badge-danger"}>{value ? "yes" : "no"}</span>;
}

export function ReferenceToggle({
  org,
  backendId,
  table,
  marked,
}: {
  org: string;
  backendId: string;
  table: { schema: string; table: string };
  marked: boolean;
}) {
  const qc = useQueryClient();
  const change = useMutation({
    mutationFn: () =>
      marked
        ? unwrap(
            api.DELETE("/api/v1/orgs/{org}/backends/{backend_id}/reference-tables/{schema}/{table}", {
              params: { path: { org, backend_id: backendId, schema: table.schema, table: table.table } },
            }),
          )
        : unwrap(
            api.POST("/api/v1/orgs/{org}/backends/{backend_id}/reference-tables", {
              params: { path: { org, backend_id: backendId } },
              body: table,
            }),
          ),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["org", org] }),
  });
  const full = `${table.schema}.${table.table}`;
  return (
    <ConfirmDialog
      trigger={
        <button type="button" className="btn btn-small">
          {marked ? `Unmark ${full}` : `Mark ${full} as reference data`}
        </button>
      }
      title={marked ? `Unmark ${full}?` : `Mark ${full} as reference data?`}
      description={
        marked
          ? "Tools that read it are withheld until they pass the publication gate again (it must then be protected by row-level security)."
          : "Reference data is the same for every caller: tools may read it without row-level security. Do this only for tables that hold no caller's data."
      }
      confirmLabel={marked ? "Unmark" : "Mark as reference data"}
      danger={!marked}
      onConfirm={() => change.mutateAsync()}
    />
  );
}

/** One tool's inspection as tables. */
export function InspectionReport({
  org,
  backendId,
  inspection,
  reference,
  canEdit,
}: {
  org: string;
  backendId: string;
  inspection: Inspection;
  reference: Schemas["ReferenceTable"][];
  canEdit: boolean;
}) {
  const marked = new Set(reference.map((r) => referenceKey(r)));
  const role = inspection.role;
  const bypass = roleCanBypass(role);
  return (
    <div>
      <p>
        Tool role <span className="mono">{role.name}</span>:{" "}
        {bypass ? (
          <span className="badge badge-danger">
            can bypass row-level security (
            {role.superuser ? "superuser" : role.bypassrls ? "BYPASSRLS" : `member of ${role.bypass_via.join(", ")}`})
          </span>
        ) : (
          <span className="badge badge-ok">cannot bypass row-level security</span>
        )}
      </p>
      {inspection.tables.length === 0 ? (
        <p className="muted">The statement touches no relation.</p>
      ) : (
        <Table
          caption="Relations the statement touches"
          rows={inspection.tables}
          rowKey={(t) => referenceKey(t)}
          columns={[
            {
              header: "Relation",
              cell: (t) => (
                <span>
                  <span className="mono">{referenceKey(t)}</span> <span className="muted">{t.kind.replace(/_/g, " ")}</span>
                </span>
              ),
            },
            { header: "RLS enabled", cell: (t) => <YesNo value={t.rls_enabled} good /> },
            { header: "RLS forced", cell: (t) => <YesNo value={t.rls_forced} good /> },
            { header: "Policies", cell: (t) => t.policies },
            { header: "Role owns it", cell: (t) => <YesNo value={t.role_is_owner} good={false} /> },
            {
              header: "Verdict",
              cell: (t) =>
                t.protected ? (
                  <span className="badge badge-ok">protected</span>
                ) : marked.has(referenceKey(t)) ? (
                  <span className="badge">reference data</span>
                ) : (
                  <span>
                    <span className="badge badge-danger">unprotected</span>{" "}
                    <span className="muted">{t.problems.join("; ")}</span>
                  </span>
                ),
            },
            {
              header: "Reference data",
              cell: (t) =>
                canEdit && !t.protected ? (
                  <ReferenceToggle
                    org={org}
                    backendId={backendId}
                    table={{ schema: t.schema, table: t.name }}
                    marked={marked.has(referenceKey(t))}
                  />
                ) : marked.has(referenceKey(t)) ? (
                  "marked"
                ) : (
                  "—"
                ),
            },
          ]}
        />
      )}
    </div>
  );
}
