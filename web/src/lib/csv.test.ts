import { describe, expect, it } from "vitest";
import { AUDIT_COLUMNS, csvCell, parseJsonLines, toCsv } from "./csv";

describe("csv", () => {
  it("quotes cells with commas, quotes and line breaks", () => {
    expect(csvCell("plain")).toBe("plain");
    expect(csvCell('say "hi", then\nleave')).toBe('"say ""hi"", then\nleave"');
    expect(csvCell(null)).toBe("");
    expect(csvCell(42)).toBe("42");
    expect(csvCell(-1)).toBe("-1");
  });
  it("writes nested values as JSON", () => {
    expect(csvCell({ a: [1, "x"] })).toBe('"{""a"":[1,""x""]}"');
  });
  it("defuses cells a spreadsheet would evaluate", () => {
    expect(csvCell("=HYPERLINK(1)")).toBe("'=HYPERLINK(1)");
    expect(csvCell("+1")).toBe("'+1");
    expect(csvCell("@cmd")).toBe("'@cmd");
  });
  it("turns exported JSON Lines into rows under the audit columns", () => {
    const text = '{"seq":1,"action":"server.create","details":{"slug":"fx"}}\n\n{"seq":2,"action":"tool.call","outcome":"success"}\n';
    const rows = parseJsonLines(text);
    const csv = toCsv(rows, AUDIT_COLUMNS).split("\r\n");
    expect(csv[0]).toBe(AUDIT_COLUMNS.join(","));
    expect(csv[1].split(",")[0]).toBe("1");
    expect(csv[1]).toContain('"{""slug"":""fx""}"');
    expect(csv[2]).toContain("tool.call,success");
    expect(csv).toHaveLength(4);
    expect(() => parseJsonLines("{oops")).toThrow(/line 1/);
  });
});
