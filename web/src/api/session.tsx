// Who is signed in: the session from GET /api/v1/session, shared by every page.
import { createContext, useContext, useEffect, type ReactNode } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, session, unwrap, type Schemas } from "./client";

export type Session = Schemas["SessionOut"];

const SESSION_KEY = ["session"] as const;

interface SessionState {
  session: Session | null;
  loading: boolean;
  error: ApiError | null;
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
  session.csrfToken = current?.csrf_token ?? null;

  useEffect(() => {
    const expired = () => {
      qc.setQueryData(SESSION_KEY, null);
    };
    session.onExpired.add(expired);
    return () => {
      session.onExpired.delete(expired);
    };
  }, [qc]);

  const value: SessionState = {
    session: current,
    loading: query.isPending,
    error: query.error instanceof ApiError ? query.error : query.error ? new ApiError(0, null) : null,
    signedIn(s) {
      session.csrfToken = s.csrf_token;
      qc.clear();
      qc.setQueryData(SESSION_KEY, s);
    },
    signedOut() {
      session.csrfToken = null;
      qc.clear();
      qc.setQueryData(SESSION_KEY, null);
    },
  };
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useSession(): SessionState {
  const ctx = useContext(Ctx);
  if (!ctx) throw new Error("useSession outside SessionProvider");
  return ctx;
}
