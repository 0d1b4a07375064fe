// The server's own credential: entered, never shown back (the API keeps it sealed).
import type { Schemas } from "../../api/client";
import { Field } from "../../components";

export type AuthDraft = {
  kind: "none" | "bearer" | "header" | "oauth_client_credentials";
  token: string;
  name: string;
  value: string;
  token_url: string;
  client_id: string;
  client_secret: string;
  scope: string;
};

export const emptyAuth: AuthDraft = {
  kind: "none",
  token: "",
  name: "",
  value: "",
  token_url: "",
  client_id: "",
  client_secret: "",
  scope: "",
};

export function authBody(d: AuthDraft): Schemas["AuthIn"] {
  switch (d.kind) {
    case "none":
      return { kind: "none" };
    case "bearer":
      return { kind: "bearer", token: d.token };
    case "header":
      return { kind: "header", name: d.name, value: d.value };
    case "oauth_client_credentials":
      return {
        kind: "oauth_client_credentials",
        token_url: d.token_url,
        client_id: d.client_id,
        client_secret: d.client_secret,
        scope: d.scope || null,
      };
  }
}

export function AuthFields({ value, onChange, error }: { value: AuthDraft; onChange: (d: AuthDraft) => void; error?: string }) {
  const set = (patch: Partial<AuthDraft>) => onChange({ ...value, ...patch });
  return (
    <fieldset className="stack" style={{ border: "1px solid var(--border)", borderRadius: 8, padding: 12, marginBottom: 14 }}>
      <legend>Credential (write-only)</legend>
      <Field label="Authentication" error={error} hint="Stored sealed; it is never shown again, only replaced.">
        <select value={value.kind} onChange={(e) => set({ kind: e.target.value as AuthDraft["kind"] })}>
          <option value="none">None</option>
          <option value="bearer">Bearer token</option>
          <option value="header">Custom header</option>
          <option value="oauth_client_credentials">OAuth client credentials</option>
        </select>
      </Field>
      {value.kind === "bearer" && (
        <Field label="Token">
          <input type="password" value={value.token} onChange={(e) => set({ token: e.target.value })} autoComplete="off" />
        </Field>
      )}
      {value.kind === "header" && (
        <div className="grid">
          <Field label="Header name">
            <input value={value.name} onChange={(e) => set({ name: e.target.value })} autoComplete="off" placeholder="X-Api-Key" />
          </Field>
          <Field label="Header value">
            <input type="password" value={value.value} onChange={(e) => set({ value: e.target.value })} autoComplete="off" />
          </Field>
        </div>
      )}
      {value.kind === "oauth_client_credentials" && (
        <div className="grid">
          <Field label="Token URL">
            <input type="url" value={value.token_url} onChange={(e) => set({ token_url: e.target.value })} autoComplete="off" />
          </Field>
          <Field label="Client ID">
            <input value={value.client_id} onChange={(e) => set({ client_id: e.target.value })} autoComplete="off" />
          </Field>
          <Field label="Client secret">
            <input type="password" value={value.client_secret} onChange={(e) => set({ client_secret: e.target.value })} autoComplete="off" />
          </Field>
          <Field label="Scope (optional)">
            <input value={value.scope} onChange={(e) => set({ scope: e.target.value })} autoComplete="off" />
          </Field>
        </div>
      )}
    </fieldset>
  );
}
