// The playground: lists the endpoint's tools and calls one as the signed-in user, through the real
// dataplane, with the user's own grants (the control API makes the call with a short-lived token
// of the user's). Forms come from each tool's input schema; the raw JSON-RPC is shown.
import { useMemo, useState, type FormEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { Field, FormAlert, formErrors } from "../../components";
import { buildArguments, fieldsFromSchema, initialValues, type Field as SchemaField, type Values } from "../../lib/schemaForm";

type Answer = Schemas["PlaygroundOut"];
type ListedTool = { name: string; title?: string; description?: string; inputSchema?: unknown };
type Message = { result?: unknown; error?: unknown } | null | undefined;

/** The JSON-RPC response of an answer, if the dataplane gave one. */
function messageOf(answer: Answer | undefined): Message {
  const m = answer?.response;
  return m && typeof m === "object" ? (m as Message) : null;
}

function SchemaInput({ field, value, onChange }: { field: SchemaField; value: string | boolean; onChange: (v: string | boolean) => void }) {
  switch (field.kind) {
    case "boolean":
      return <input type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />;
    case "enum":
      return (
        <select value={String(value)} onChange={(e) => onChange(e.target.value)}>
          <option value="">{field.required ? "Choose…" : "(none)"}</option>
          {(field.enumValues ?? []).map((v) => (
            <option key={JSON.stringify(v)} value={JSON.stringify(v)}>
              {typeof v === "string" ? v : JSON.stringify(v)}
            </option>
          ))}
        </select>
      );
    case "json":
      return <textarea rows={3} value={String(value)} onChange={(e) => onChange(e.target.value)} spellCheck={false} className="mono" />;
    case "number":
    case "integer":
      return <input inputMode={field.kind === "integer" ? "numeric" : "decimal"} value={String(value)} onChange={(e) => onChange(e.target.value)} />;
    default:
      return <input value={String(value)} onChange={(e) => onChange(e.target.value)} autoComplete="off" />;
  }
}

function hint(f: SchemaField): string | undefined {
  const parts = [f.description, f.kind === "json" ? `JSON: ${f.shape}` : undefined, f.nullable ? "may be null" : undefined];
  const text = parts.filter(Boolean).join(" · ");
  return text || undefined;
}

function AnswerView({ answer }: { answer: Answer }) {
  const error = messageOf(answer)?.error !== undefined;
  return (
    <div className="stack" aria-live="polite">
      <p>
        Dataplane answered HTTP <strong>{answer.http_status}</strong>
        {error && <span className="badge badge-danger"> JSON-RPC error</span>}. Your token carried{" "}
        {answer.scopes.length ? <span className="mono">{answer.scopes.join(" ")}</span> : "no scope"}.
      </p>
      {answer.detail && (
        <div className="alert alert-error" role="alert">
          {answer.detail}
        </div>
      )}
      <h3>Request</h3>
      <pre className="code" data-testid="playground-request">{JSON.stringify(answer.request, null, 2)}</pre>
      <h3>Response</h3>
      <pre className="code" data-testid="playground-response">
        {answer.response ? JSON.stringify(answer.response, null, 2) : "(no JSON-RPC response)"}
      </pre>
      {answer.notifications.length > 0 && (
        <>
          <h3>Other messages</h3>
          <pre className="code">{answer.notifications.map((n) => JSON.stringify(n)).join("\n")}</pre>
        </>
      )}
    </div>
  );
}

export function Playground({ org, endpointId }: { org: string; endpointId: string }) {
  const [selected, setSelected] = useState("");
  const [values, setValues] = useState<Values>({});
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const send = (body: Schemas["PlaygroundIn"]) =>
    unwrap(
      api.POST("/api/v1/orgs/{org}/endpoints/{endpoint_id}/playground", {
        params: { path: { org, endpoint_id: endpointId } },
        body,
      }),
    );
  const list = useMutation({ mutationFn: () => send({ method: "tools/list" }) });
  const call = useMutation({ mutationFn: send });
  const tools: ListedTool[] = useMemo(() => {
    const result = messageOf(list.data)?.result as { tools?: ListedTool[] } | undefined;
    return result?.tools ?? [];
  }, [list.data]);
  const tool = tools.find((t) => t.name === selected);
  const fields = useMemo(() => fieldsFromSchema(tool?.inputSchema), [tool]);

  function choose(name: string) {
    setSelected(name);
    const t = tools.find((x) => x.name === name);
    setValues(initialValues(fieldsFromSchema(t?.inputSchema)));
    setFieldErrors({});
    call.reset();
  }
  function submit(e: FormEvent) {
    e.preventDefault();
    const built = buildArguments(fields, values);
    if (!built.ok) {
      setFieldErrors(built.errors);
      return;
    }
    setFieldErrors({});
    call.mutate({ method: "tools/call", params: { name: selected, arguments: built.arguments } });
  }
  const apiErrors = formErrors(list.error ?? call.error, []);
  return (
    <div className="stack">
      <p className="muted">Calls go through the dataplane as you, with your own scopes: they are audited and counted like any client's.</p>
      <FormAlert message={apiErrors.form} />
      <button type="button" className="btn" onClick={() => list.mutate()} disabled={list.isPending}>
        {list.isPending ? "Listing…" : list.data ? "List my tools again" : "List my tools"}
      </button>
      {list.data && messageOf(list.data)?.result === undefined && <AnswerView answer={list.data} />}
      {list.data && tools.length === 0 && messageOf(list.data)?.result !== undefined && (
        <p>No tool is granted to you at this endpoint.</p>
      )}
      {tools.length > 0 && (
        <Field label="Tool">
          <select value={selected} onChange={(e) => choose(e.target.value)}>
            <option value="">Choose a tool…</option>
            {tools.map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </Field>
      )}
      {tool && (
        <form onSubmit={submit} noValidate aria-label={`Call ${tool.name}`}>
          {tool.description && <p>{tool.description}</p>}
          {fields.length === 0 && <p className="muted">This tool takes no arguments.</p>}
          {fields.map((f) =>
            f.kind === "boolean" ? (
              <label className="check" key={f.name}>
                <SchemaInput field={f} value={values[f.name] ?? f.initial} onChange={(v) => setValues({ ...values, [f.name]: v })} />
                {f.label}
                {f.required ? " (required)" : ""}
              </label>
            ) : (
              <Field key={f.name} label={`${f.label}${f.required ? " (required)" : ""}`} hint={hint(f)} error={fieldErrors[f.name]}>
                <SchemaInput field={f} value={values[f.name] ?? f.initial} onChange={(v) => setValues({ ...values, [f.name]: v })} />
              </Field>
            ),
          )}
          <button type="submit" className="btn btn-primary" disabled={call.isPending}>
            {call.isPending ? "Calling…" : `Call ${tool.name}`}
          </button>
        </form>
      )}
      {call.data && <AnswerView answer={call.data} />}
    </div>
  );
}
