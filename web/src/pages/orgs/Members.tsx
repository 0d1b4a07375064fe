import { useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap, type Schemas } from "../../api/client";
import { orgsQuery, roleAtLeast, useCurrentOrg, type Role } from "../../api/org";
import { useSession } from "../../api/session";
import { ConfirmDialog, EmptyState, ErrorState, Field, FormAlert, Loading, Notice, PageHeader, Table, formErrors } from "../../components";

const ROLES: Role[] = ["viewer", "developer", "admin", "owner"];
type Member = Schemas["MemberOut"];
type Invitation = Schemas["InvitationOut"];

export default function Members() {
  const { slug, role } = useCurrentOrg();
  const isAdmin = roleAtLeast(role, "admin");
  return (
    <>
      <PageHeader title="Members" description="Who is in this org and what they may do (viewer < developer < admin < owner)." />
      <MemberList slug={slug} myRole={role} />
      {isAdmin && <Invitations slug={slug} myRole={role} />}
      <LeaveOrg slug={slug} />
    </>
  );
}

function MemberList({ slug, myRole }: { slug: string; myRole: Role | undefined }) {
  const { session } = useSession();
  const qc = useQueryClient();
  const key = ["org", slug, "members"];
  const members = useQuery({ queryKey: key, queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/members", { params: { path: { org: slug } } })) });
  const [error, setError] = useState<string | null>(null);
  const changeRole = useMutation({
    mutationFn: ({ id, role }: { id: string; role: Role }) =>
      unwrap(api.PATCH("/api/v1/orgs/{org}/members/{user_id}", { params: { path: { org: slug, user_id: id } }, body: { role } })),
    onSuccess: () => qc.invalidateQueries({ queryKey: key }),
    onError: (e) => setError(e.message),
  });
  const isAdmin = roleAtLeast(myRole, "admin");
  // Roles one may give: below one's own, except that an owner may make owners.
  const assignable = ROLES.filter((r) => myRole === "owner" || ROLES.indexOf(r) < ROLES.indexOf(myRole ?? "viewer"));
  const canManage = (m: Member) => isAdmin && m.user_id !== session?.user.id && (myRole === "owner" || ROLES.indexOf(m.role) < ROLES.indexOf(myRole ?? "viewer"));
  return (
    <section className="card" aria-labelledby="members-h">
      <h2 id="members-h">Members</h2>
      <FormAlert message={error} />
      {members.isPending ? (
        <Loading />
      ) : members.error ? (
        <ErrorState error={members.error} retry={() => members.refetch()} />
      ) : members.data.length === 0 ? (
        <EmptyState title="No members" />
      ) : (
        <Table
          caption="Members"
          rows={members.data}
          rowKey={(m) => m.user_id}
          columns={[
            { header: "Name", cell: (m) => m.display_name || <span className="muted">—</span> },
            { header: "Email", cell: (m) => m.email },
            {
              header: "Role",
              cell: (m) =>
                canManage(m) ? (
                  <select
                    aria-label={`Role of ${m.email}`}
                    value={m.role}
                    onChange={(e) => {
                      setError(null);
                      changeRole.mutate({ id: m.user_id, role: e.target.value as Role });
                    }}
                  >
                    {assignable.map((r) => (
                      <option key={r} value={r}>
                        {r}
                      </option>
                    ))}
                  </select>
                ) : (
                  m.role
                ),
            },
            { header: "Joined", cell: (m) => new Date(m.joined_at).toLocaleDateString() },
            {
              header: "Actions",
              cell: (m) =>
                canManage(m) ? (
                  <ConfirmDialog
                    trigger={
                      <button type="button" className="btn btn-small" aria-label={`Remove ${m.email}`}>
                        Remove
                      </button>
                    }
                    title={`Remove ${m.email}?`}
                    description="They lose access to this org at once, including their OAuth access to its endpoints."
                    confirmLabel="Remove member"
                    danger
                    onConfirm={async () => {
                      await unwrap(api.DELETE("/api/v1/orgs/{org}/members/{user_id}", { params: { path: { org: slug, user_id: m.user_id } } }));
                      await qc.invalidateQueries({ queryKey: key });
                    }}
                  />
                ) : null,
            },
          ]}
        />
      )}
    </section>
  );
}

function Invitations({ slug, myRole }: { slug: string; myRole: Role | undefined }) {
  const qc = useQueryClient();
  const key = ["org", slug, "invitations"];
  const invitations = useQuery({
    queryKey: key,
    queryFn: () => unwrap(api.GET("/api/v1/orgs/{org}/invitations", { params: { path: { org: slug } } })),
  });
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Role>("developer");
  const invite = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/orgs/{org}/invitations", { params: { path: { org: slug } }, body: { email, role } })),
    onSuccess: () => {
      setEmail("");
      return qc.invalidateQueries({ queryKey: key });
    },
  });
  const errors = formErrors(invite.error, ["email", "role"]);
  const assignable = ROLES.filter((r) => myRole === "owner" || ROLES.indexOf(r) < ROLES.indexOf(myRole ?? "viewer"));
  function submit(e: FormEvent) {
    e.preventDefault();
    invite.mutate();
  }
  return (
    <section className="card" aria-labelledby="inv-h">
      <h2 id="inv-h">Invitations</h2>
      {invite.isSuccess && <Notice>Invitation sent to {invite.data.email}.</Notice>}
      <FormAlert message={errors.form} />
      <form className="inline-form" onSubmit={submit} noValidate>
        <Field label="Email to invite" error={errors.field.email}>
          <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Role" error={errors.field.role}>
          <select value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {assignable.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </Field>
        <button type="submit" className="btn btn-primary" disabled={invite.isPending}>
          Send invitation
        </button>
      </form>
      <h3 style={{ marginTop: 20 }}>Pending</h3>
      {invitations.isPending ? (
        <Loading />
      ) : invitations.error ? (
        <ErrorState error={invitations.error} retry={() => invitations.refetch()} />
      ) : invitations.data.length === 0 ? (
        <EmptyState title="No pending invitations" />
      ) : (
        <Table<Invitation>
          caption="Pending invitations"
          rows={invitations.data}
          rowKey={(i) => String(i.id)}
          columns={[
            { header: "Email", cell: (i) => i.email },
            { header: "Role", cell: (i) => i.role },
            { header: "Expires", cell: (i) => new Date(i.expires_at).toLocaleString() },
            {
              header: "Actions",
              cell: (i) => (
                <ConfirmDialog
                  trigger={
                    <button type="button" className="btn btn-small" aria-label={`Revoke the invitation of ${i.email}`}>
                      Revoke
                    </button>
                  }
                  title={`Revoke the invitation of ${i.email}?`}
                  description="The link in their mail stops working."
                  confirmLabel="Revoke"
                  danger
                  onConfirm={async () => {
                    await unwrap(
                      api.DELETE("/api/v1/orgs/{org}/invitations/{invitation_id}", { params: { path: { org: slug, invitation_id: String(i.id) } } }),
                    );
                    await qc.invalidateQueries({ queryKey: key });
                  }}
                />
              ),
            },
          ]}
        />
      )}
    </section>
  );
}

function LeaveOrg({ slug }: { slug: string }) {
  const qc = useQueryClient();
  const navigate = useNavigate();
  return (
    <section className="card" aria-labelledby="leave-h">
      <h2 id="leave-h">Leave this org</h2>
      <p className="muted">You lose access to it. An org's last owner cannot leave: transfer ownership first.</p>
      <ConfirmDialog
        trigger={
          <button type="button" className="btn">
            Leave org
          </button>
        }
        title="Leave this org?"
        description="You will need a new invitation to come back."
        confirmLabel="Leave"
        danger
        onConfirm={async () => {
          await unwrap(api.POST("/api/v1/orgs/{org}/leave", { params: { path: { org: slug } } }));
          localStorage.removeItem("gatehouse.org");
          await qc.invalidateQueries({ queryKey: orgsQuery.queryKey });
          navigate("/orgs");
        }}
      />
    </section>
  );
}
