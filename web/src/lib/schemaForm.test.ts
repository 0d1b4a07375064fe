import { describe, expect, it } from "vitest";
import { buildArguments, fieldsFromSchema, initialValues, toolCallRequest } from "./schemaForm";

const schema = {
  type: "object",
  required: ["order_id", "count"],
  properties: {
    order_id: { type: "string", description: "The order", minLength: 2, pattern: "^o-" },
    count: { type: "integer", minimum: 1, maximum: 10 },
    ratio: { type: "number" },
    express: { type: "boolean", default: true },
    status: { enum: ["open", "closed", 3] },
    tags: { type: "array", items: { type: "string" } },
    note: { type: ["string", "null"], title: "Note" },
    limit: { anyOf: [{ type: "integer" }, { type: "null" }] },
  },
};

describe("fieldsFromSchema", () => {
  it("makes one field per property with its kind, requiredness and constraints", () => {
    const fields = fieldsFromSchema(schema);
    expect(fields.map((f) => [f.name, f.kind, f.required])).toEqual([
      ["order_id", "string", true],
      ["count", "integer", true],
      ["ratio", "number", false],
      ["express", "boolean", false],
      ["status", "enum", false],
      ["tags", "json", false],
      ["note", "string", false],
      ["limit", "integer", false],
    ]);
    const byName = Object.fromEntries(fields.map((f) => [f.name, f]));
    expect(byName.order_id.description).toBe("The order");
    expect(byName.count.maximum).toBe(10);
    expect(byName.express.initial).toBe(true);
    expect(byName.tags.shape).toBe("array of string");
    expect(byName.note.label).toBe("Note");
    expect(byName.note.nullable).toBe(true);
    expect(byName.limit.nullable).toBe(true);
  });
  it("gives no fields for a schema without properties", () => {
    expect(fieldsFromSchema({ type: "object" })).toEqual([]);
    expect(fieldsFromSchema(undefined)).toEqual([]);
  });
});

describe("buildArguments", () => {
  const fields = fieldsFromSchema(schema);
  it("parses what was typed into typed arguments, leaving empty optional fields out", () => {
    const values = { ...initialValues(fields), order_id: "o-42", count: "3", status: '"closed"', tags: '["a","b"]', limit: "null" };
    expect(buildArguments(fields, values)).toEqual({
      ok: true,
      arguments: { order_id: "o-42", count: 3, express: true, status: "closed", tags: ["a", "b"], limit: null },
    });
  });
  it("reports every problem at its field", () => {
    const values = { ...initialValues(fields), order_id: "x", count: "2.5", ratio: "abc", status: '"nope"', tags: "[oops" };
    const result = buildArguments(fields, values);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(Object.keys(result.errors).sort()).toEqual(["count", "order_id", "ratio", "status", "tags"]);
    expect(result.errors.order_id).toBe("At least 2 characters.");
    expect(result.errors.count).toBe("Enter a whole number.");
  });
  it("requires required fields and checks bounds and patterns", () => {
    const r1 = buildArguments(fields, initialValues(fields));
    expect(r1.ok === false && r1.errors).toEqual({ order_id: "Required.", count: "Required." });
    const r2 = buildArguments(fields, { ...initialValues(fields), order_id: "ab", count: "11" });
    expect(r2.ok === false && r2.errors).toEqual({ order_id: "Must match ^o-.", count: "At most 10." });
  });
  it("sends an unchecked optional boolean as absent and a numeric enum member as a number", () => {
    const values = { ...initialValues(fields), order_id: "o-1", count: "1", express: false, status: "3" };
    expect(buildArguments(fields, values)).toEqual({ ok: true, arguments: { order_id: "o-1", count: 1, status: 3 } });
  });
  it("wraps arguments in a JSON-RPC tools/call request", () => {
    expect(toolCallRequest(7, "orders__get", { id: 1 })).toEqual({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: { name: "orders__get", arguments: { id: 1 } },
    });
  });
});
