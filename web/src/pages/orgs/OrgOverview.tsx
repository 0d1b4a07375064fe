import { Link } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { roleAtLeast, useCurrentOrg } from "../../api/org";
import { ErrorState, Loading, PageHeader } from "../../components";
import { extraRoutes } from "../../routes.extra";
import { UsageMeter } from "./UsageMeter";

export default function OrgOverview() {
  const { org, slug, role } = useCurrentOrg();
  const members = useQuery({
    queryKey: ["org", slug, "members"],
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/members", { params: { path: { org: slug } } })),
  });
  if (!org) return null;
  return (
    <>
      <PageHeader title={org.name} description={<>Org <code>{org.slug}</code> · your role: {org.role}</>} />
      <div className="grid">
        <section className="card" aria-labelledby="members-h">
          <h2 id="members-h">Members</h2>
          {members.isPending ? (
            <Loading />
          ) : members.error ? (
            <ErrorState error={members.error} retry={() => members.refetch()} />
          ) : (
            <p className="stat">{members.data.length}</p>
          )}
          <Link to={`/orgs/${slug}/members`}>{roleAtLeast(role, "admin") ? "Manage members and invitations" : "See members"}</Link>
        </section>
        <section className="card" aria-labelledby="usage-h">
          <h2 id="usage-h">This month</h2>
          <UsageMeter slug={slug} />
        </section>
      </div>
      {extraRoutes.some((r) => r.nav) && (
        <section className="card" aria-labelledby="go-h">
          <h2 id="go-h">Go to</h2>
          <ul>
            {extraRoutes
              .filter((r) => r.nav)
              .map((r) => (
                <li key={r.path}>
                  <Link to={`/orgs/${slug}/${r.path}`}>{r.nav}</Link>
                </li>
              ))}
          </ul>
        </section>
      )}
    </>
  );
}
