import { describe, expect, it } from "vitest";
import { changes, columnState, grantEffective, grantsOf, isGranted, setColumn, setRow, toggle, visibleTools } from "./grantMatrix";

const scopes = [
  { id: "s1", name: "orders:read", tool_ids: ["t1", "hidden"] },
  { id: "s2", name: "orders:write", tool_ids: [] },
];
const tools = [
  { id: "t2", exposed_name: "orders__refund", status: "pending" },
  { id: "t1", exposed_name: "orders__get", status: "approved" },
  { id: "t3", exposed_name: "orders__old", status: "removed" },
];

describe("grant matrix", () => {
  it("reads grants and toggles one cell without touching the original", () => {
    const g = grantsOf(scopes);
    const next = toggle(g, "s2", "t1");
    expect(isGranted(g, "s2", "t1")).toBe(false);
    expect(isGranted(next, "s2", "t1")).toBe(true);
    expect(isGranted(toggle(next, "s2", "t1"), "s2", "t1")).toBe(false);
  });

  it("saves only changed scopes with their complete set, keeping tools it does not show", () => {
    const g = grantsOf(scopes);
    const edited = toggle(toggle(g, "s1", "t2"), "s1", "t1");
    expect(changes(scopes, g, edited)).toEqual([
      { scopeId: "s1", scopeName: "orders:read", toolIds: ["hidden", "t2"], added: ["t2"], removed: ["t1"] },
    ]);
    expect(changes(scopes, g, toggle(toggle(g, "s2", "t1"), "s2", "t1"))).toEqual([]);
  });

  it("sets a whole column or row and reports tri-state column headers", () => {
    const g = grantsOf(scopes);
    const ids = ["t1", "t2"];
    expect(columnState(g, "s1", ids)).toBe("some");
    const all = setColumn(g, "s1", ids, true);
    expect(columnState(all, "s1", ids)).toBe("all");
    expect(isGranted(all, "s1", "hidden")).toBe(true);
    expect(columnState(setColumn(all, "s1", ids, false), "s1", ids)).toBe("none");
    const row = setRow(g, "t2", ["s1", "s2"], true);
    expect(isGranted(row, "s1", "t2") && isGranted(row, "s2", "t2")).toBe(true);
    expect(isGranted(setRow(row, "t1", ["s1", "s2"], false), "s1", "t1")).toBe(false);
  });

  it("lists tools by name, hiding removed tools nobody grants, and flags ungranted states", () => {
    const g = grantsOf(scopes);
    expect(visibleTools(tools, g).map((t) => t.id)).toEqual(["t1", "t2"]);
    expect(visibleTools(tools, toggle(g, "s2", "t3")).map((t) => t.id)).toEqual(["t1", "t3", "t2"]);
    expect(grantEffective(tools[1])).toBe(true);
    expect(grantEffective(tools[0])).toBe(false);
  });
});
