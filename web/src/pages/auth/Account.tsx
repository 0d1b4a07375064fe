import { useState, type FormEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { useSession, useSignOut } from "../../api/session";
import { ConfirmDialog, Field, FormAlert, Notice, PageHeader, formErrors } from "../../components";

export default function Account() {
  const { session } = useSession();
  const signOut = useSignOut();
  if (!session) return null;
  const user = session.user;
  return (
    <>
      <PageHeader title="Account" description="Your sign-in details. Org memberships are under each org's Members page." />
      <section className="card" aria-labelledby="profile-h">
        <h2 id="profile-h">Profile</h2>
        <dl className="details">
          <dt>Email</dt>
          <dd>
            {user.email} {user.email_verified ? <span className="badge badge-ok">verified</span> : <span className="badge badge-warn">not verified</span>}
          </dd>
          <dt>Name</dt>
          <dd>{user.display_name || <span className="muted">not set</span>}</dd>
          <dt>Signed in with</dt>
          <dd>{session.auth_method === "password" ? "password" : session.auth_method}</dd>
          <dt>Session ends</dt>
          <dd>{new Date(session.expires_at).toLocaleString()} at the latest</dd>
        </dl>
        <button type="button" className="btn" onClick={() => void signOut()}>
          Log out
        </button>
      </section>
      {user.has_password && <ChangePassword />}
      <DeleteAccount hasPassword={user.has_password} onDeleted={() => signOut({ sessionEnded: true })} />
    </>
  );
}

function ChangePassword() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const change = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/account/password", { body: { current_password: current, new_password: next } })),
    onSuccess: () => {
      setCurrent("");
      setNext("");
    },
  });
  const errors = formErrors(change.error, ["current_password", "new_password"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    change.mutate();
  }
  return (
    <section className="card" aria-labelledby="pw-h">
      <h2 id="pw-h">Change password</h2>
      {change.isSuccess && <Notice>Your password is changed. Your other sessions and OAuth access were ended.</Notice>}
      <FormAlert message={errors.form} />
      <form onSubmit={submit} noValidate>
        <Field label="Current password" error={errors.field.current_password}>
          <input type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
        </Field>
        <Field label="New password" hint="At least 8 characters." error={errors.field.new_password}>
          <input type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} />
        </Field>
        <button type="submit" className="btn btn-primary" disabled={change.isPending}>
          Change password
        </button>
      </form>
    </section>
  );
}

function DeleteAccount({ hasPassword, onDeleted }: { hasPassword: boolean; onDeleted: () => void }) {
  const [password, setPassword] = useState("");
  return (
    <section className="card card-danger" aria-labelledby="del-h">
      <h2 id="del-h">Delete account</h2>
      <p className="muted">Deletes your account and ends all your sessions and OAuth access. An org you solely own must be transferred first.</p>
      {hasPassword && (
        <Field label="Password (to confirm)">
          <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} />
        </Field>
      )}
      <ConfirmDialog
        trigger={
          <button type="button" className="btn btn-danger">
            Delete my account
          </button>
        }
        title="Delete your account?"
        description="This cannot be undone."
        confirmLabel="Delete account"
        danger
        onConfirm={async () => {
          await unwrap(api.DELETE("/api/v1/account", { body: { password: hasPassword ? password : null } }));
          onDeleted();
        }}
      />
    </section>
  );
}
