import { describe, expect, it } from "vitest";
import { daysBetween, pivot, type UsageRow } from "./usageSeries";

const row = (day: string, endpoint: string | null, calls: number, latency = 10, errors = 0, tool: string | null = null): UsageRow => ({
  day,
  endpoint,
  endpoint_id: endpoint ? `id-${endpoint}` : null,
  tool,
  calls,
  errors,
  requests: calls,
  avg_latency_ms: latency,
});

describe("daysBetween", () => {
  it("lists each UTC day of a half-open range", () => {
    expect(daysBetween(new Date("2026-11-29T15:00:00Z"), new Date("2026-12-02T00:00:00Z"))).toEqual([
      "2026-11-29",
      "2026-11-30",
      "2026-12-01",
    ]);
  });
});

describe("pivot", () => {
  const days = ["2026-12-01", "2026-12-02", "2026-12-03"];
  const rows = [
    row("2026-12-01", "support", 4, 10),
    row("2026-12-01", "support", 6, 20),
    row("2026-12-03", "support", 1, 30),
    row("2026-12-02", "billing", 20, 5, 2),
    row("2026-11-30", "billing", 99),
  ];
  it("makes one series per endpoint, largest first, with zero for quiet days", () => {
    const s = pivot(rows, days, "endpoint", "calls");
    expect(s.series.map((x) => x.label)).toEqual(["billing", "support"]);
    expect(s.series[1].values).toEqual([10, 0, 1]);
    expect(s.series[0].values).toEqual([0, 20, 0]);
    expect(s.x[0]).toBe(Date.parse("2026-12-01T00:00:00Z") / 1000);
  });
  it("weights latency by requests and leaves quiet days as gaps", () => {
    const s = pivot(rows, days, "endpoint", "avg_latency_ms");
    expect(s.series[1].values).toEqual([16, null, 30]);
  });
  it("counts errors per series", () => {
    expect(pivot(rows, days, "endpoint", "errors").series[0].values).toEqual([0, 2, 0]);
  });
  it("sums what is beyond the limit into one 'other' series", () => {
    const many = ["a", "b", "c"].map((e, i) => row("2026-12-01", e, 10 - i));
    const s = pivot(many, days, "endpoint", "calls", 1);
    expect(s.series.map((x) => x.label)).toEqual(["a", "other (2)"]);
    expect(s.series[1].values[0]).toBe(17);
  });
  it("labels calls that named no tool", () => {
    const s = pivot([row("2026-12-02", null, 3, 1, 0, ""), row("2026-12-02", null, 2, 1, 0, "fx__t")], days, "tool", "calls");
    expect(s.series.map((x) => x.label)).toEqual(["(no tool)", "fx__t"]);
  });
});
