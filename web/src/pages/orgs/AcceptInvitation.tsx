import { useEffect, useRef } from "react";
import { Link, useSearchParams } from "react-router";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { orgsQuery } from "../../api/org";
import { useSession } from "../../api/session";
import { FormAlert, Loading, Notice, PageHeader } from "../../components";

/** The page the invitation mail links to: `/invitations/accept?token=…` (signed in). */
export default function AcceptInvitation() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const { session } = useSession();
  const qc = useQueryClient();
  const accept = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/invitations/accept", { body: { token } })),
    onSuccess: () => qc.invalidateQueries({ queryKey: orgsQuery.queryKey }),
  });
  const started = useRef(false);
  useEffect(() => {
    if (!started.current && token) {
      started.current = true;
      accept.mutate();
    }
  }, [token, accept]);
  return (
    <>
      <PageHeader title="Accept invitation" />
      <div className="card" style={{ maxWidth: 560 }}>
        {!token && <FormAlert message="This link has no token. Open the link from the mail again." />}
        {accept.isPending && <Loading label="Joining…" />}
        {accept.isError && (
          <>
            <FormAlert message={accept.error.message} />
            <p className="muted">
              The invitation is for a particular email address; you are signed in as {session?.user.email}.
            </p>
          </>
        )}
        {accept.isSuccess && (
          <>
            <Notice>
              You joined <strong>{accept.data.name}</strong> as {accept.data.role}.
            </Notice>
            <Link className="btn btn-primary" to={`/orgs/${accept.data.slug}`}>
              Open {accept.data.name}
            </Link>
          </>
        )}
      </div>
    </>
  );
}
