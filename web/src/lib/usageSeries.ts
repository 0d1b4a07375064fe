// Usage rows (grouped by day and by endpoint or tool) pivoted into chart series: one x value per
// UTC day of the range, one series per endpoint or tool.

export type UsageRow = {
  day?: string | null;
  endpoint?: string | null;
  endpoint_id?: string | null;
  tool?: string | null;
  calls: number;
  errors: number;
  requests: number;
  avg_latency_ms: number;
};

export type Metric = "calls" | "errors" | "avg_latency_ms";
export type Dimension = "endpoint" | "tool";

export type Series = {
  /** Seconds since the epoch of each day's UTC midnight (what uPlot wants on x). */
  x: number[];
  days: string[];
  series: { label: string; values: (number | null)[] }[];
};

const DAY = 86_400_000;

/** Every UTC day from `from` (inclusive) to `to` (exclusive), as `YYYY-MM-DD`. */
export function daysBetween(from: Date, to: Date): string[] {
  const start = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  const out: string[] = [];
  for (let t = start; t < to.getTime(); t += DAY) out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}

export function labelOf(row: UsageRow, dim: Dimension): string {
  if (dim === "tool") return row.tool ? row.tool : "(no tool)";
  return row.endpoint ?? (row.endpoint_id ? `deleted ${row.endpoint_id.slice(0, 8)}` : "(no endpoint)");
}

/**
 * One series per endpoint or tool, ordered by total calls (largest first), at most `limit`
 * of them; the rest are summed into "other" (latency: weighted by requests). Days without
 * usage count 0, and have no latency (null: a gap, not a zero).
 */
export function pivot(rows: UsageRow[], days: string[], dim: Dimension, metric: Metric, limit = 8): Series {
  const index = new Map(days.map((d, i) => [d, i]));
  type Acc = { calls: number[]; errors: number[]; requests: number[]; latencySum: number[]; total: number };
  const groups = new Map<string, Acc>();
  for (const r of rows) {
    const i = r.day ? index.get(r.day) : undefined;
    if (i === undefined) continue;
    const label = labelOf(r, dim);
    let g = groups.get(label);
    if (!g) {
      const zeros = () => days.map(() => 0);
      g = { calls: zeros(), errors: zeros(), requests: zeros(), latencySum: zeros(), total: 0 };
      groups.set(label, g);
    }
    g.calls[i] += r.calls;
    g.errors[i] += r.errors;
    g.requests[i] += r.requests;
    g.latencySum[i] += r.avg_latency_ms * r.requests;
    g.total += r.calls;
  }
  const ordered = [...groups.entries()].sort((a, b) => b[1].total - a[1].total || a[0].localeCompare(b[0]));
  const kept = ordered.slice(0, limit);
  const rest = ordered.slice(limit);
  if (rest.length) {
    const other: Acc = { calls: days.map(() => 0), errors: days.map(() => 0), requests: days.map(() => 0), latencySum: days.map(() => 0), total: 0 };
    for (const [, g] of rest) {
      days.forEach((_, i) => {
        other.calls[i] += g.calls[i];
        other.errors[i] += g.errors[i];
        other.requests[i] += g.requests[i];
        other.latencySum[i] += g.latencySum[i];
      });
      other.total += g.total;
    }
    kept.push([`other (${rest.length})`, other]);
  }
  const values = (g: Acc): (number | null)[] =>
    metric === "avg_latency_ms"
      ? g.requests.map((n, i) => (n > 0 ? Math.round((g.latencySum[i] / n) * 10) / 10 : null))
      : g[metric];
  return {
    x: days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000),
    days,
    series: kept.map(([label, g]) => ({ label, values: values(g) })),
  };
}
