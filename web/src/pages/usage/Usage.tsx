// Usage and billing: calls, errors and latency per endpoint and per tool over time, the quota
// meter of the current period, and the org's invoices.
import { useMemo, useState } from "react";
import { Link } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { useCurrentOrg } from "../../api/org";
import { EmptyState, ErrorState, Field, Loading, PageHeader, Table } from "../../components";
import { UsageMeter } from "../orgs/UsageMeter";
import { daysBetween, pivot, type Dimension } from "../../lib/usageSeries";
import { Section } from "../servers/common";
import { Chart } from "./Chart";

/** An amount in cents (fractions allowed, for unit prices) in the invoice's currency. */
export function money(cents: number, currency: string, maxFraction = 2): string {
  return new Intl.NumberFormat(undefined, {
    style: "currency",
    currency: currency.toUpperCase(),
    maximumFractionDigits: Math.max(2, maxFraction),
  }).format(cents / 100);
}

function Charts({ org, days: span, dim }: { org: string; days: number; dim: Dimension }) {
  // Whole UTC days: from midnight `span - 1` days ago to the next midnight.
  const [range] = useState(() => {
    const now = new Date();
    const to = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
    return { to };
  });
  const from = new Date(range.to.getTime() - span * 86_400_000);
  const fromDay = from.toISOString().slice(0, 10);
  const toDay = range.to.toISOString().slice(0, 10);
  const usage = useQuery({
    queryKey: ["org", org, "usage", fromDay, toDay, dim],
    queryFn: () =>
      unwrap(api.GET("/api/v1/orgs/{org}/usage", { params: { path: { org }, query: { from: fromDay, to: toDay, group_by: `day,${dim}` } } })),
    refetchInterval: 30_000,
  });
  const days = useMemo(() => daysBetween(from, range.to), [fromDay, toDay]); // eslint-disable-line react-hooks/exhaustive-deps
  const charts = useMemo(() => {
    if (!usage.data) return null;
    return {
      calls: pivot(usage.data.rows, days, dim, "calls"),
      errors: pivot(usage.data.rows, days, dim, "errors"),
      latency: pivot(usage.data.rows, days, dim, "avg_latency_ms"),
    };
  }, [usage.data, days, dim]);
  if (usage.isPending) return <Loading />;
  if (usage.error) return <ErrorState error={usage.error} retry={() => usage.refetch()} />;
  const t = usage.data.totals;
  return (
    <>
      <div className="grid" style={{ marginBottom: 16 }}>
        <div>
          <div className="muted">Calls</div>
          <div className="stat" data-testid="usage-calls">
            {t.calls.toLocaleString()}
          </div>
        </div>
        <div>
          <div className="muted">Errors</div>
          <div className="stat">{t.errors.toLocaleString()}</div>
        </div>
        <div>
          <div className="muted">Denied</div>
          <div className="stat">{t.denied.toLocaleString()}</div>
        </div>
        <div>
          <div className="muted">Mean latency</div>
          <div className="stat">{Math.round(t.avg_latency_ms)} ms</div>
        </div>
      </div>
      {usage.data.rows.length === 0 || !charts ? (
        <EmptyState title="No usage in this range">Calls appear here a moment after they are made.</EmptyState>
      ) : (
        <>
          <Chart title={`Calls per ${dim}`} data={charts.calls} />
          <Chart title={`Errors per ${dim}`} data={charts.errors} />
          <Chart title={`Mean latency per ${dim}`} data={charts.latency} unit="ms" />
        </>
      )}
    </>
  );
}

function Invoices({ org }: { org: string }) {
  const invoices = useQuery({
    queryKey: ["org", org, "invoices"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/invoices", { params: { path: { org } } })),
  });
  if (invoices.isPending) return <Loading />;
  if (invoices.error) return <ErrorState error={invoices.error} retry={() => invoices.refetch()} />;
  if (invoices.data.invoices.length === 0) {
    return <EmptyState title="No invoices yet">An invoice is made for each closed month.</EmptyState>;
  }
  return (
    <Table
      caption="Invoices"
      rows={invoices.data.invoices}
      rowKey={(i) => i.id}
      columns={[
        { header: "Period", cell: (i) => <Link to={`invoices/${i.id}`}>{`${i.period_start} – ${i.period_end}`}</Link> },
        { header: "Plan", cell: (i) => i.plan_id },
        { header: "Status", cell: (i) => <span className={i.status === "final" ? "badge badge-ok" : "badge"}>{i.status}</span> },
        { header: "Total", numeric: true, cell: (i) => money(i.total_cents, i.currency) },
      ]}
    />
  );
}

export default function Usage() {
  const { slug: org } = useCurrentOrg();
  const [days, setDays] = useState(30);
  const [dim, setDim] = useState<Dimension>("endpoint");
  return (
    <>
      <PageHeader title="Usage and billing" description="What your endpoints served, and what the current period has used of your plan." />
      <Section title="Current period">
        <UsageMeter slug={org} />
      </Section>
      <Section
        title="Activity"
        actions={
          <div className="inline-form">
            <Field label="Range">
              <select value={days} onChange={(e) => setDays(Number(e.target.value))}>
                <option value={7}>Last 7 days</option>
                <option value={30}>Last 30 days</option>
                <option value={90}>Last 90 days</option>
              </select>
            </Field>
            <Field label="Per">
              <select value={dim} onChange={(e) => setDim(e.target.value as Dimension)}>
                <option value="endpoint">endpoint</option>
                <option value="tool">tool</option>
              </select>
            </Field>
          </div>
        }
      >
        <Charts key={`${days}-${dim}`} org={org} days={days} dim={dim} />
      </Section>
      <Section title="Invoices">
        <Invoices org={org} />
      </Section>
    </>
  );
}
