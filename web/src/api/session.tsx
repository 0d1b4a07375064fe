// Who is signed in: the session from GET /api/v1/session, shared by every page.
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { useNavigate } from "react-router";
import { QueryClient, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, session, unwrap, type Schemas } from "./client";

export type Session = Schemas["SessionOut"];

const SESSION_KEY = ["session"] as const;

interface SessionState {
  session: Session | null;
  loading: boolean;
  error: ApiError | null;
  /** The session ended while the app was in use (not a sign-out). */
  expired: boolean;
  /** Stores a session just returned by a login. */
  signedIn(s: Session): void;
  /** Forgets the session and every cached answer (after logout or expiry). */
  signedOut(): void;
}

const Ctx = createContext<SessionState | null>(null);

async function fetchSession(): Promise<Session | null> {
  try {
    return await unwrap(api.GET("/api/v1/session"));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const qc = useQueryClient();
  const query = useQuery({ queryKey: SESSION_KEY, queryFn: fetchSession, staleTime: 60_000, retry: false });
  const current = query.data ?? null;
  const [expired, setExpired] = useState(false);
  session.csrfToken = current?.csrf_token ?? null;

  useEffect(() => {
    const onExpired = () => {
      setExpired(true);
      forgetAllBut(qc);
      qc.setQueryData(SESSION_KEY, null);
    };
    session.onExpired.add(onExpired);
    return () => {
      session.onExpired.delete(onExpired);
    };
  }, [qc]);

  const value: SessionState = {
    session: current,
    loading: query.isPending,
    error: query.error instanceof ApiError ? query.error : query.error ? new ApiError(0, null) : null,
    expired,
    signedIn(s) {
      setExpired(false);
      session.csrfToken = s.csrf_token;
      forgetAllBut(qc);
      qc.setQueryData(SESSION_KEY, s);
    },
    signedOut() {
      setExpired(false);
      session.csrfToken = null;
      forgetAllBut(qc);
      qc.setQueryData(SESSION_KEY, null);
    },
  };
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

/** Drops every cached answer but the session's (whose observer must stay attached). */
function forgetAllBut(qc: QueryClient) {
  qc.removeQueries({ predicate: (q) => q.queryKey[0] !== SESSION_KEY[0] });
  qc.getMutationCache().clear();
}

export function useSession(): SessionState {
  const ctx = useContext(Ctx);
  if (!ctx) throw new Error("useSession outside SessionProvider");
  return ctx;
}

/**
 * Signing out (the log-out buttons, and after deleting the account): ends the session on the
 * server unless `sessionEnded` says the server already did, opens the login page, then forgets
 * the session.
 */
export function useSignOut(): (opts?: { sessionEnded?: boolean }) => Promise<void> {
  const { signedOut } = useSession();
  const navigate = useNavigate();
  return async ({ sessionEnded = false } = {}) => {
    if (!sessionEnded) await api.DELETE("/api/v1/session");
    // To the login page first, then forget the session: forgetting it on a signed-in page would
    // have that page's guard send the user to a login that comes back to it.
    navigate("/login", { replace: true });
    signedOut();
  };
}
