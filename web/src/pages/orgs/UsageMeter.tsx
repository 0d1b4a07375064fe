import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { ErrorState, Loading } from "../../components";

/** Billable calls of the current period against the plan's included calls. */
export function UsageMeter({ slug }: { slug: string }) {
  const usage = useQuery({
    queryKey: ["org", slug, "usage-current"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/usage/current", { params: { path: { org: slug } } })),
  });
  if (usage.isPending) return <Loading />;
  if (usage.error) return <ErrorState error={usage.error} retry={() => usage.refetch()} />;
  const { plan, calls, over_quota, period_end } = usage.data;
  const limit = plan.included_calls;
  const pct = limit > 0 ? Math.min(100, Math.round((calls / limit) * 100)) : 100;
  return (
    <div>
      <p>
        Plan <strong>{plan.name}</strong>: <span className="stat">{calls.toLocaleString()}</span> of {limit.toLocaleString()} included calls
      </p>
      <div
        className={over_quota || calls > limit ? "meter meter-over" : "meter"}
        role="meter"
        aria-label="Included calls used"
        aria-valuemin={0}
        aria-valuemax={limit}
        aria-valuenow={Math.min(calls, limit)}
      >
        <span style={{ width: `${pct}%` }} />
      </div>
      <p className="muted">
        {over_quota ? "The hard limit is reached: calls are refused until the period ends." : `${pct}% used.`} The period ends{" "}
        {new Date(period_end).toLocaleDateString()}.
        {plan.hard_limit_calls != null && ` Hard limit: ${plan.hard_limit_calls.toLocaleString()} calls.`}
      </p>
    </div>
  );
}
