/**
 * The page to return to after logging in, from a `next` parameter: only a local path (one leading
 * slash, no scheme, no `//host`), so a crafted link cannot send the user to another site.
 */
export function safeNext(raw: string | null | undefined): string {
  if (!raw || !raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\")) return "/";
  if (/[\u0000-\u001f]/.test(raw)) return "/";
  return raw;
}

/** Where a signed-out user is sent, remembering the page to come back to. */
export function loginPath(location: { pathname: string; search: string }, expired = false): string {
  const params = new URLSearchParams();
  const next = location.pathname + location.search;
  if (next !== "/") params.set("next", next);
  if (expired) params.set("expired", "1");
  const query = params.toString();
  return query ? `/login?${query}` : "/login";
}
