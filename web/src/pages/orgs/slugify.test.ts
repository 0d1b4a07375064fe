import { describe, expect, it } from "vitest";
import { slugify } from "./CreateOrg";

describe("slugify", () => {
  it("suggests a URL-safe slug from a name", () => {
    expect(slugify("  Acme Corp. (EU) ")).toBe("acme-corp-eu");
    expect(slugify("Café Müller")).toBe("cafe-muller");
    expect(slugify("***")).toBe("");
  });
});
