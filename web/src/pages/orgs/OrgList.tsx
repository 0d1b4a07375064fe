import { Link } from "react-router";
import { useOrgs } from "../../api/org";
import { EmptyState, ErrorState, Loading, PageHeader, Table } from "../../components";

export default function OrgList() {
  const orgs = useOrgs();
  return (
    <>
      <PageHeader
        title="Your orgs"
        description="An org holds a team's servers, endpoints, members and billing."
        actions={
          <Link className="btn btn-primary" to="/orgs/new">
            Create an org
          </Link>
        }
      />
      {orgs.isPending ? (
        <Loading />
      ) : orgs.error ? (
        <ErrorState error={orgs.error} retry={() => orgs.refetch()} />
      ) : orgs.data.length === 0 ? (
        <EmptyState
          title="You are not in any org yet"
          action={
            <Link className="btn btn-primary" to="/orgs/new">
              Create your first org
            </Link>
          }
        >
          Create one, or accept an invitation from the mail a teammate sent you.
        </EmptyState>
      ) : (
        <Table
          caption="Your orgs"
          rows={orgs.data}
          rowKey={(o) => o.id}
          columns={[
            { header: "Name", cell: (o) => <Link to={`/orgs/${o.slug}`}>{o.name}</Link> },
            { header: "Slug", cell: (o) => <code>{o.slug}</code> },
            { header: "Your role", cell: (o) => o.role },
            { header: "Plan", cell: (o) => o.plan_id },
          ]}
        />
      )}
    </>
  );
}
