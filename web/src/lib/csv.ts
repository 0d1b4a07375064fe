// Audit events as CSV (RFC 4180), for spreadsheets: one row per event, nested values as JSON, and
// cells a spreadsheet would run as a formula defused.

export const AUDIT_COLUMNS = [
  "seq",
  "occurred_at",
  "source",
  "actor_type",
  "actor_id",
  "actor_label",
  "action",
  "outcome",
  "target_type",
  "target_id",
  "ip",
  "details",
  "prev_hash",
  "entry_hash",
] as const;

/** One CSV cell: quoted when it holds a comma, quote or line break; a leading =, +, -, @, tab or
 * carriage return gets a `'` so spreadsheets show it as text instead of evaluating it. */
export function csvCell(value: unknown): string {
  let text = value === null || value === undefined ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);
  if (/^[=+\-@\t\r]/.test(text) && !(typeof value === "number")) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(rows: Record<string, unknown>[], columns: readonly string[]): string {
  const lines = [columns.join(",")];
  for (const row of rows) lines.push(columns.map((c) => csvCell(row[c])).join(","));
  return lines.join("\r\n") + "\r\n";
}

/** The objects of a JSON Lines text (blank lines skipped); a line that is not JSON is an error. */
export function parseJsonLines(text: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`line ${i + 1} of the export is not JSON`);
      }
    });
}
