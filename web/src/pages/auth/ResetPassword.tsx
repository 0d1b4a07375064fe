import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { useMutation } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { Field, FormAlert, Notice, formErrors } from "../../components";

/** Without a token: asks for a reset mail. With `?token=…` (the mail's link): sets a new password. */
export default function ResetPassword() {
  const [params] = useSearchParams();
  const token = params.get("token");
  document.title = "Reset your password · Gatehouse";
  return <div className="auth-card">{token ? <SetPassword token={token} /> : <RequestReset />}</div>;
}

function RequestReset() {
  const [email, setEmail] = useState("");
  const request = useMutation({ mutationFn: () => unwrap(api.POST("/api/v1/password-reset", { body: { email } })) });
  const errors = formErrors(request.error, ["email"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    request.mutate();
  }
  return (
    <>
      <h1>Reset your password</h1>
      {request.isSuccess ? (
        <Notice>{request.data.message}</Notice>
      ) : (
        <form onSubmit={submit} noValidate>
          <FormAlert message={errors.form} />
          <Field label="Email" hint="We mail you a link to choose a new password." error={errors.field.email}>
            <input type="email" autoComplete="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
          </Field>
          <button type="submit" className="btn btn-primary" disabled={request.isPending}>
            Send the link
          </button>
        </form>
      )}
      <div className="auth-links">
        <Link to="/login">Back to log in</Link>
      </div>
    </>
  );
}

function SetPassword({ token }: { token: string }) {
  const [password, setPassword] = useState("");
  const navigate = useNavigate();
  const confirm = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/password-reset/confirm", { body: { token, new_password: password } })),
    onSuccess: () => navigate("/login?reset=1", { replace: true }),
  });
  const errors = formErrors(confirm.error, ["new_password", "token"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    confirm.mutate();
  }
  return (
    <>
      <h1>Choose a new password</h1>
      <FormAlert message={errors.form ?? errors.field.token ?? null} />
      <form onSubmit={submit} noValidate>
        <Field label="New password" hint="At least 8 characters." error={errors.field.new_password}>
          <input type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </Field>
        <button type="submit" className="btn btn-primary" disabled={confirm.isPending}>
          Set password
        </button>
      </form>
    </>
  );
}
