import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { useMutation } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { Field, FormAlert, Notice, formErrors } from "../../components";

export default function Signup() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [displayName, setDisplayName] = useState("");
  const signup = useMutation({
    mutationFn: () =>
      unwrap(api.POST("/api/v1/signup", { body: { email, password, display_name: displayName.trim() || null } })),
  });
  const errors = formErrors(signup.error, ["email", "password", "display_name"]);
  function submit(e: FormEvent) {
    e.preventDefault();
    signup.mutate();
  }
  document.title = "Create an account · Gatehouse";
  if (signup.isSuccess) {
    return (
      <div className="auth-card">
        <h1>Check your email</h1>
        <Notice>{signup.data.message}</Notice>
        <p>
          We sent a link to <strong>{email}</strong>. Open it to verify your address, then <Link to="/login">log in</Link>.
        </p>
      </div>
    );
  }
  return (
    <div className="auth-card">
      <h1>Create an account</h1>
      <FormAlert message={errors.form} />
      <form onSubmit={submit} noValidate>
        <Field label="Email" error={errors.field.email}>
          <input type="email" autoComplete="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </Field>
        <Field label="Name" hint="How your teammates see you (optional)." error={errors.field.display_name}>
          <input autoComplete="name" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
        </Field>
        <Field label="Password" hint="At least 8 characters." error={errors.field.password}>
          <input type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </Field>
        <button type="submit" className="btn btn-primary" disabled={signup.isPending}>
          {signup.isPending ? "Creating…" : "Create account"}
        </button>
      </form>
      <div className="auth-links">
        <span>
          Already have an account? <Link to="/login">Log in</Link>
        </span>
      </div>
    </div>
  );
}
