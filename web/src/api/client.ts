// The console's one API client: typed from the committed OpenAPI document (schema.d.ts, generated
// by `npm run gen:api`). It sends the session cookie, adds the CSRF header the control API
// requires on every write, and reports a lost session so the app can send the user to login.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** The CSRF token of the current session and who wants to hear that the session ended. */
export const session = {
  csrfToken: null as string | null,
  onExpired: new Set<() => void>(),
};

const csrf: Middleware = {
  onRequest({ request }) {
    if (WRITE_METHODS.has(request.method) && session.csrfToken) {
      request.headers.set("X-CSRF-Token", session.csrfToken);
    }
    return request;
  },
  onResponse({ request, response }) {
    // A 401 on anything but the session endpoints themselves means the session expired.
    const url = new URL(request.url, window.location.origin);
    if (response.status === 401 && !url.pathname.startsWith("/api/v1/session")) {
      session.csrfToken = null;
      session.onExpired.forEach((cb) => cb());
    }
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: "", credentials: "include" });
api.use(csrf);

/** An API failure as the UI shows it: the problem document, or a network failure. */
export class ApiError extends Error {
  constructor(
    public readonly status: number,
    public readonly problem: Problem | null,
  ) {
    super(problem?.detail || problem?.title || (status === 0 ? "The server could not be reached." : `Request failed (${status}).`));
  }
  get code(): string | undefined {
    return this.problem?.code;
  }
  get field(): string | undefined {
    return this.problem?.field ?? undefined;
  }
}

/**
 * Unwraps an openapi-fetch result: the data, or an ApiError carrying the problem document.
 * Use it in react-query functions: `queryFn: () => unwrap(api.GET("/api/v1/orgs"))`.
 */
export async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result;
  try {
    result = await call;
  } catch {
    throw new ApiError(0, null);
  }
  const { data, error, response } = result;
  if (!response.ok) {
    const problem = isProblem(error) ? error : null;
    throw new ApiError(response.status, problem);
  }
  return data as T;
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "code" in value && "status" in value;
}
