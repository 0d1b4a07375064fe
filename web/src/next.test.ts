import { describe, expect, it } from "vitest";
import { loginPath, safeNext } from "./next";

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

describe("loginPath", () => {
  it("remembers the page and whether the session expired", () => {
    expect(loginPath({ pathname: "/", search: "" })).toBe("/login");
    expect(loginPath({ pathname: "/orgs/acme", search: "?x=1" })).toBe("/login?next=%2Forgs%2Facme%3Fx%3D1");
    expect(loginPath({ pathname: "/orgs/acme", search: "" }, true)).toBe("/login?next=%2Forgs%2Facme&expired=1");
  });
});
