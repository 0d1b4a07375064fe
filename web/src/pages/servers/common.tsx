// Small pieces shared by the MCP-estate pages.
import type { ReactNode } from "react";
import type { Schemas } from "../../api/client";
import { CopyButton } from "../../components";
import "./estate.css";

export type ToolStatus = Schemas["ToolStatusOut"];

/** A date-time as the reader's locale writes it; "never" for null. */
export function when(value: string | null | undefined): string {
  if (!value) return "never";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toLocaleString();
}

const STATUS_BADGE: Record<ToolStatus, string> = {
  approved: "badge badge-ok",
  pending: "badge badge-warn",
  changed: "badge badge-danger",
  rejected: "badge",
  removed: "badge",
};

export function StatusBadge({ status }: { status: ToolStatus }) {
  return <span className={STATUS_BADGE[status]}>{status}</span>;
}

/** A titled card section. */
export function Section({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  return (
    <section className="card" aria-label={title}>
      <div className="page-header" style={{ marginBottom: 12 }}>
        <h2 className="section-title">{title}</h2>
        {actions && <div className="page-actions">{actions}</div>}
      </div>
      {children}
    </section>
  );
}

/** A secret the API returns once: shown with a copy button and a warning. */
export function SecretOnce({ label, secret, children }: { label: string; secret: string; children?: ReactNode }) {
  return (
    <div className="secret-once" role="status">
      <strong>{label}</strong> — shown once: copy it now, it cannot be shown again.
      <code data-testid="secret">{secret}</code>
      <CopyButton text={secret} label={`Copy ${label.toLowerCase()}`} />
      {children}
    </div>
  );
}
