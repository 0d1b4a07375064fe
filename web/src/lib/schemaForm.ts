// Forms generated from a tool's JSON Schema `inputSchema`: the fields to render, and the
// `arguments` object built (and checked) from what was typed.

export type FieldKind = "string" | "number" | "integer" | "boolean" | "enum" | "json";

export type Field = {
  name: string;
  kind: FieldKind;
  label: string;
  description?: string;
  required: boolean;
  /** May be sent as JSON null (`type: ["string", "null"]`). */
  nullable: boolean;
  enumValues?: unknown[];
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  /** What the control starts with: text for text-like kinds, a boolean for checkboxes. */
  initial: string | boolean;
  /** A one-line reminder of the expected JSON for `json` fields (e.g. `array of string`). */
  shape?: string;
};

type Schema = Record<string, unknown>;

function asSchema(value: unknown): Schema {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Schema) : {};
}

/** The schema's types, with `null` split off: `type`, a type list, or `anyOf`/`oneOf` branches. */
function typesOf(schema: Schema): { types: string[]; nullable: boolean; branch: Schema } {
  let types: string[] = [];
  let branch = schema;
  if (typeof schema.type === "string") types = [schema.type];
  else if (Array.isArray(schema.type)) types = schema.type.filter((t): t is string => typeof t === "string");
  else {
    const alternatives = (schema.anyOf ?? schema.oneOf) as unknown;
    if (Array.isArray(alternatives)) {
      const branches = alternatives.map(asSchema);
      const nonNull = branches.filter((b) => b.type !== "null");
      if (nonNull.length === 1) {
        const inner = typesOf(nonNull[0]);
        return { types: inner.types, nullable: branches.length > 1 || inner.nullable, branch: nonNull[0] };
      }
      return { types: ["json"], nullable: nonNull.length < branches.length, branch };
    }
  }
  const nullable = types.includes("null");
  return { types: types.filter((t) => t !== "null"), nullable, branch };
}

function shapeOf(schema: Schema): string {
  const { types } = typesOf(schema);
  const t = types[0];
  if (t === "array") {
    const items = asSchema(schema.items);
    return `array of ${Object.keys(items).length ? shapeOf(items) : "anything"}`;
  }
  return t ?? "any JSON value";
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** One field per property of an object schema, in the schema's order. */
export function fieldsFromSchema(inputSchema: unknown): Field[] {
  const schema = asSchema(inputSchema);
  const properties = asSchema(schema.properties);
  const required = new Set(Array.isArray(schema.required) ? (schema.required as unknown[]) : []);
  return Object.entries(properties).map(([name, raw]) => {
    const prop = asSchema(raw);
    const { types, nullable, branch } = typesOf(prop);
    const merged: Schema = { ...branch, ...prop };
    let kind: FieldKind;
    if (Array.isArray(merged.enum)) kind = "enum";
    else if (types.length === 1 && ["string", "number", "integer", "boolean"].includes(types[0]))
      kind = types[0] as FieldKind;
    else kind = "json";
    const def = merged.default;
    let initial: string | boolean;
    if (kind === "boolean") initial = def === true;
    else if (def === undefined) initial = "";
    else if (kind === "json" || kind === "enum") initial = JSON.stringify(def);
    else initial = String(def);
    const field: Field = {
      name,
      kind,
      label: typeof merged.title === "string" && merged.title ? merged.title : name,
      required: required.has(name),
      nullable,
      initial,
    };
    if (typeof merged.description === "string") field.description = merged.description;
    if (kind === "enum") field.enumValues = merged.enum as unknown[];
    if (typeof merged.format === "string") field.format = merged.format;
    if (typeof merged.pattern === "string") field.pattern = merged.pattern;
    const bounds = {
      minimum: num(merged.minimum),
      maximum: num(merged.maximum),
      minLength: num(merged.minLength),
      maxLength: num(merged.maxLength),
    };
    for (const [k, v] of Object.entries(bounds)) if (v !== undefined) (field as Record<string, unknown>)[k] = v;
    if (kind === "json") field.shape = shapeOf(prop);
    return field;
  });
}

export type Values = Record<string, string | boolean>;

export function initialValues(fields: Field[]): Values {
  return Object.fromEntries(fields.map((f) => [f.name, f.initial]));
}

export type BuildResult =
  | { ok: true; arguments: Record<string, unknown> }
  | { ok: false; errors: Record<string, string> };

/**
 * The `arguments` of a `tools/call` from the typed values. Empty optional fields are left out;
 * numbers, enums and JSON are parsed; required fields, bounds, lengths and patterns are checked
 * (the server checks again: this only spares a round trip).
 */
export function buildArguments(fields: Field[], values: Values): BuildResult {
  const args: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const f of fields) {
    const raw = values[f.name] ?? f.initial;
    if (f.kind === "boolean") {
      // A checkbox always has a value; send it when required or when it differs from false.
      if (f.required || raw === true) args[f.name] = raw === true;
      continue;
    }
    const text = typeof raw === "string" ? raw : String(raw);
    if (text.trim() === "" && f.kind !== "string") {
      if (f.required) errors[f.name] = "Required.";
      continue;
    }
    if (f.kind === "string" && text === "") {
      if (f.required) errors[f.name] = "Required.";
      continue;
    }
    if (f.nullable && text.trim() === "null" && f.kind !== "string") {
      args[f.name] = null;
      continue;
    }
    switch (f.kind) {
      case "string": {
        if (f.minLength !== undefined && [...text].length < f.minLength)
          errors[f.name] = `At least ${f.minLength} characters.`;
        else if (f.maxLength !== undefined && [...text].length > f.maxLength)
          errors[f.name] = `At most ${f.maxLength} characters.`;
        else if (f.pattern !== undefined && !matches(f.pattern, text))
          errors[f.name] = `Must match ${f.pattern}.`;
        else args[f.name] = text;
        break;
      }
      case "number":
      case "integer": {
        const n = Number(text.trim());
        if (!Number.isFinite(n)) errors[f.name] = "Enter a number.";
        else if (f.kind === "integer" && !Number.isInteger(n)) errors[f.name] = "Enter a whole number.";
        else if (f.minimum !== undefined && n < f.minimum) errors[f.name] = `At least ${f.minimum}.`;
        else if (f.maximum !== undefined && n > f.maximum) errors[f.name] = `At most ${f.maximum}.`;
        else args[f.name] = n;
        break;
      }
      case "enum": {
        // The select's option values are the JSON of the enum members.
        const chosen = (f.enumValues ?? []).find((v) => JSON.stringify(v) === text);
        if (chosen === undefined) errors[f.name] = "Choose one of the listed values.";
        else args[f.name] = chosen;
        break;
      }
      case "json": {
        try {
          args[f.name] = JSON.parse(text);
        } catch {
          errors[f.name] = `Enter JSON (${f.shape ?? "any value"}).`;
        }
        break;
      }
    }
  }
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, arguments: args };
}

function matches(pattern: string, text: string): boolean {
  try {
    return new RegExp(pattern, "u").test(text);
  } catch {
    // A pattern this browser cannot compile is left to the server.
    return true;
  }
}

/** The JSON-RPC request a form produces (the playground shows it as sent). */
export function toolCallRequest(id: number, name: string, args: Record<string, unknown>): Record<string, unknown> {
  return { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } };
}
