import { useState, type FormEvent } from "react";
import { Link, Navigate, useNavigate, useSearchParams } from "react-router";
import { useMutation } from "@tanstack/react-query";
import { api, ApiError, unwrap } from "../../api/client";
import { useSession } from "../../api/session";
import { Field, FormAlert, Notice, formErrors } from "../../components";
import { safeNext } from "../../next";

/** The callback refused the login: `bad_request` and `invalid_field` name the same failure. */
const SSO_UNFINISHED =
  "The single sign-on login could not be finished: it expired, was already used, or the identity provider refused it. Start again.";

/** What a single sign-on step that sent the browser here (`?sso_error=<problem code>`) says. */
const SSO_ERRORS: Record<string, string> = {
  not_found: "That org does not exist or does not use single sign-on. Check its short name.",
  bad_request: SSO_UNFINISHED,
  invalid_field: SSO_UNFINISHED,
  forbidden: "Your identity provider signed you in, but this identity may not sign in to the org. Ask one of its admins.",
  upstream_error: "The org's identity provider could not be reached. Try again in a moment.",
  rate_limited: "Too many sign-in attempts. Wait a minute, then try again.",
};

export default function Login() {
  const [params] = useSearchParams();
  const next = safeNext(params.get("next"));
  const { session, signedIn } = useSession();
  const navigate = useNavigate();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [ssoOrg, setSsoOrg] = useState("");
  const login = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/session", { body: { email, password } })),
    onSuccess: (s) => {
      signedIn(s);
      navigate(next, { replace: true });
    },
  });
  if (session && !login.isPending) return <Navigate to={next} replace />;
  const errors = formErrors(login.error, ["email", "password"]);
  const ssoError = login.error ? null : params.get("sso_error");
  const ssoUrl =
    login.error instanceof ApiError && login.error.code === "sso_required" ? login.error.message.match(/https?:\/\/\S+|\/api\/v1\/sso\/\S+/)?.[0] : undefined;
  function submit(e: FormEvent) {
    e.preventDefault();
    login.mutate();
  }
  function sso(e: FormEvent) {
    e.preventDefault();
    const slug = ssoOrg.trim();
    if (!slug) return;
    window.location.assign(`/api/v1/sso/${encodeURIComponent(slug)}/start?return_to=${encodeURIComponent(next)}`);
  }
  document.title = "Log in · Gatehouse";
  return (
    <div className="auth-card">
      <h1>Log in</h1>
      {params.get("expired") && <Notice>Your session ended. Log in again to continue.</Notice>}
      {params.get("reset") && <Notice>Your password is changed. Log in with the new one.</Notice>}
      {params.get("verified") && <Notice>Your email address is verified. You can log in now.</Notice>}
      {params.get("sso") === "confirm_by_mail" && (
        <Notice>Check your inbox: to finish signing in, follow the link we sent to the email address your identity provider gave us.</Notice>
      )}
      {ssoError && <FormAlert message={SSO_ERRORS[ssoError] ?? "Single sign-on failed. Start again, or ask one of the org's admins."} />}
      <FormAlert message={errors.form} />
      {ssoUrl && (
        <p>
          <a href={ssoUrl}>Continue with your org's single sign-on</a>
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <Field label="Email" error={errors.field.email}>
          <input type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </Field>
        <Field label="Password" error={errors.field.password}>
          <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </Field>
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={login.isPending}>
            {login.isPending ? "Logging in…" : "Log in"}
          </button>
          <Link to="/reset-password">Forgot your password?</Link>
        </div>
      </form>
      <div className="divider">or</div>
      <form onSubmit={sso}>
        <Field label="Org (for single sign-on)" hint="The org's short name, as in its console address.">
          <input value={ssoOrg} onChange={(e) => setSsoOrg(e.target.value)} autoComplete="organization" />
        </Field>
        <button type="submit" className="btn">
          Log in with SSO
        </button>
      </form>
      <div className="auth-links">
        <span>
          New to Gatehouse? <Link to={next === "/" ? "/signup" : `/signup?next=${encodeURIComponent(next)}`}>Create an account</Link>
        </span>
      </div>
    </div>
  );
}
