/**
 * The page to return to after logging in, from a `next` parameter: only a local path (one leading
 * slash, no scheme, no `//host`), so a crafted link cannot send the user to another site.
 */
export function safeNext(raw: string | null | undefined): string {
  if (!raw || !raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\")) return "/";
  if (/[\u0000-\u001f]/.test(raw)) return "/";
  return raw;
}
