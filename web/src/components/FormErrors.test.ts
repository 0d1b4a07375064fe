import { describe, expect, it } from "vitest";
import { ApiError } from "../api/client";
import { formErrors } from "./FormErrors";

const problem = (field: string | null, detail: string) =>
  new ApiError(400, { type: "t", title: "Invalid request field", status: 400, code: "invalid_field", detail, field });

describe("formErrors", () => {
  it("puts a field's problem at that field", () => {
    expect(formErrors(problem("email", "must be an email address"), ["email", "password"])).toEqual({
      field: { email: "must be an email address" },
      form: null,
    });
  });
  it("matches nested fields to their form field", () => {
    expect(formErrors(problem("allowed_domains[1]", "bad domain"), ["allowed_domains"]).field).toEqual({ allowed_domains: "bad domain" });
  });
  it("shows a problem of another field above the form", () => {
    expect(formErrors(problem("zz_unknown", "unknown field"), ["email"])).toEqual({ field: {}, form: "unknown field" });
  });
  it("shows a network failure above the form", () => {
    expect(formErrors(new ApiError(0, null), ["email"]).form).toBe("The server could not be reached.");
  });
  it("has nothing to show without an error", () => {
    expect(formErrors(null, ["email"])).toEqual({ field: {}, form: null });
  });
});
