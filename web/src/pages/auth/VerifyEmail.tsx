import { useEffect, useRef } from "react";
import { Link, useSearchParams } from "react-router";
import { useMutation } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import { FormAlert, Loading, Notice } from "../../components";

/** The page the verification mail links to: `/verify-email?token=…`. */
export default function VerifyEmail() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const verify = useMutation({ mutationFn: () => unwrap(api.POST("/api/v1/account/verify-email", { body: { token } })) });
  const started = useRef(false);
  useEffect(() => {
    if (!started.current && token) {
      started.current = true;
      verify.mutate();
    }
  }, [token, verify]);
  document.title = "Verify your email · Gatehouse";
  return (
    <div className="auth-card">
      <h1>Verify your email</h1>
      {!token && <FormAlert message="This link has no token. Open the link from the mail again." />}
      {verify.isPending && <Loading label="Verifying…" />}
      {verify.isError && <FormAlert message={verify.error.message} />}
      {verify.isSuccess && <Notice>{verify.data.message}</Notice>}
      <p>
        <Link to="/login">Go to log in</Link>
      </p>
    </div>
  );
}
