import { describe, expect, it } from "vitest";
import { safeNext } from "./next";

describe("safeNext", () => {
  it("keeps local paths with their query", () => {
    expect(safeNext("/orgs/acme/members?tab=2")).toBe("/orgs/acme/members?tab=2");
  });
  it("refuses other sites and odd input", () => {
    for (const bad of ["https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)", "", null, "/a\nb"]) {
      expect(safeNext(bad)).toBe("/");
    }
  });
});
