import { ApiError } from "../api/client";

/**
 * Splits an API failure between the form's fields and the form as a whole: a problem whose
 * `field` is one of `fields` is shown at that field, anything else above the form.
 */
export function formErrors(error: unknown, fields: readonly string[]): { field: Record<string, string>; form: string | null } {
  if (!error) return { field: {}, form: null };
  if (error instanceof ApiError) {
    const f = error.field;
    if (f) {
      const match = fields.find((name) => f === name || f.startsWith(`${name}.`) || f.startsWith(`${name}[`));
      if (match) return { field: { [match]: error.problem?.detail ?? error.message }, form: null };
    }
    return { field: {}, form: error.message };
  }
  return { field: {}, form: error instanceof Error ? error.message : String(error) };
}
